//! Alerts: rules people write ([`rule`]), evaluated on every relevant
//! update with cooldown and hysteresis ([`engine`]), recorded in the store
//! and delivered to webhooks, chat, email, SMS, calls, push and the log ([`notify`]), by a
//! service that follows the live feed ([`service`]).

#![warn(missing_docs)]

pub mod engine;
pub mod notify;
pub mod rule;
pub mod service;
mod smtp;

pub use engine::{Engine, Firing};
pub use notify::{ChannelConfig, Delivery, Notifier, Target, Twilio};
pub use rule::{Condition, Rule, RuleError};
pub use service::AlertHandle;
pub use smtp::Credentials;

//! Gaps: stretches of a trade stream (or of an order book) that
//! candlekeep knows it did not see.

use crate::{Exchange, Instrument, Ts};

/// Where a gap stands.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GapState {
    /// Detected, not repaired yet.
    Open,
    /// Every missing trade was fetched and stored.
    Filled,
    /// It cannot be repaired; the reason says why.
    Unfillable,
}

impl GapState {
    /// `open`, `filled` or `unfillable`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            GapState::Open => "open",
            GapState::Filled => "filled",
            GapState::Unfillable => "unfillable",
        }
    }

    /// Parses the name written by [`GapState::as_str`].
    #[must_use]
    pub fn parse(text: &str) -> Option<GapState> {
        match text {
            "open" => Some(GapState::Open),
            "filled" => Some(GapState::Filled),
            "unfillable" => Some(GapState::Unfillable),
            _ => None,
        }
    }
}

/// What a gap is missing.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum GapKind {
    /// Trades (gaps before book gaps existed are of trades).
    #[default]
    Trades,
    /// The order book: from an incident or a lost connection until its
    /// next snapshot the book is unknown. Never repaired (no venue serves a
    /// past book); it is `unfillable` from the start.
    Book,
}

impl GapKind {
    /// `trades` or `book`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            GapKind::Trades => "trades",
            GapKind::Book => "book",
        }
    }

    /// Parses the name written by [`GapKind::as_str`].
    #[must_use]
    pub fn parse(text: &str) -> Option<GapKind> {
        match text {
            "trades" => Some(GapKind::Trades),
            "book" => Some(GapKind::Book),
            _ => None,
        }
    }
}

/// Missing trades of one instrument: the ids (where ids are sequential) and
/// the time span between the trades seen on either side.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Gap {
    /// The venue.
    pub exchange: Exchange,
    /// The instrument.
    pub instrument: Instrument,
    /// Exchange time of the last trade before the gap.
    pub from_ts: Ts,
    /// Exchange time of the first trade after the gap.
    pub to_ts: Ts,
    /// The first missing trade id, where ids are sequential.
    pub first_missing_id: Option<u64>,
    /// The last missing trade id, where ids are sequential.
    pub last_missing_id: Option<u64>,
    /// Open, filled or unfillable.
    pub state: GapState,
    /// How it was found, or why it cannot be filled.
    pub reason: String,
    /// When candlekeep noticed it.
    pub detected_at: Ts,
    /// Trades or the order book.
    #[serde(default)]
    pub kind: GapKind,
}

/// How far a resumable backfill job has come: committed in the same
/// transaction as the data it covers, so a rerun continues exactly there.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BackfillProgress {
    /// The job: exchange, instrument, kind and range, such as
    /// `binance BTC-USDT trades 2024-01-01T00:00:00Z..2024-01-02T00:00:00Z`.
    pub job: String,
    /// Where to continue: the next trade id or open time, as the job writes it.
    pub cursor: String,
    /// True when the job has covered its whole range.
    pub done: bool,
    /// When this was written.
    pub updated_at: Ts,
}

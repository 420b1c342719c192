//! Alert rules over REST (`/api/v1/alerts`): list, create, read, replace
//! and delete (changes need the bearer token), and the firings with their
//! delivery results. Rules from the config file are listed with ids
//! `config:N` and change only in the file.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ck_alerts::Rule;
use ck_model::Ts;
use serde::Serialize;

use crate::ApiState;
use crate::error::ApiError;
use crate::market::Params;
use crate::params;

/// A rule and where it comes from.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct AlertRuleView {
    /// `config:N` for the config file's rules, a number for the API's.
    id: String,
    /// `config` or `api`.
    source: String,
    /// The rule, as it was given (with defaults filled in).
    #[schema(value_type = Object)]
    rule: serde_json::Value,
    /// When an API rule was last written.
    updated_at: Option<Ts>,
}

/// A firing and its deliveries.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct FiringView {
    /// The firing's id.
    id: i64,
    /// The rule's id.
    rule_id: String,
    /// When it fired.
    fired_at: Ts,
    /// What fired: rule, kind, exchange, instrument, value, threshold, message.
    #[schema(value_type = Object)]
    firing: serde_json::Value,
    /// One result per channel (channel, ok, attempts, error), once known.
    #[schema(value_type = Option<Vec<Object>>)]
    deliveries: Option<serde_json::Value>,
}

fn view(id: String, source: &str, rule: &Rule, updated_at: Option<Ts>) -> AlertRuleView {
    AlertRuleView {
        id,
        source: source.to_owned(),
        rule: serde_json::to_value(rule).unwrap_or_default(),
        updated_at,
    }
}

/// The rule in `body`, checked, with its channels known.
fn read_rule(state: &ApiState, body: &[u8]) -> Result<Rule, ApiError> {
    let body = std::str::from_utf8(body)
        .map_err(|e| ApiError::BadRequest(format!("rule: the body is not UTF-8 text: {e}")))?;
    let rule = Rule::from_json(body).map_err(|e| ApiError::BadRequest(format!("rule: {e}")))?;
    if let Some(missing) = rule
        .notify
        .iter()
        .find(|n| !state.alerts.channels.contains(n))
    {
        return Err(ApiError::BadRequest(format!(
            "rule: no channel named `{missing}`; configured: {}",
            if state.alerts.channels.is_empty() {
                "none (add [[alerts.channels]] to the config)".to_owned()
            } else {
                state.alerts.channels.join(", ")
            }
        )));
    }
    Ok(rule)
}

/// An API rule's numeric id, or why the id cannot be changed: a config
/// rule is a conflict (it changes in the file), one that does not exist is
/// not found, as `GET` says.
fn stored_id(state: &ApiState, id: &str) -> Result<i64, ApiError> {
    if id.starts_with("config:") {
        return Err(if state.alerts.config_rules.iter().any(|(i, _)| i == id) {
            ApiError::Conflict(format!(
                "rule `{id}` comes from the config file: change it there"
            ))
        } else {
            ApiError::NotFound(format!("no alert rule `{id}`"))
        });
    }
    id.parse()
        .map_err(|_| ApiError::NotFound(format!("no alert rule `{id}`")))
}

/// Every rule: the config file's, then the API's.
#[utoipa::path(get, path = "/api/v1/alerts", tag = "alerts",
    responses((status = 200, description = "The rules.", body = [AlertRuleView])))]
pub(crate) async fn list(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let mut out: Vec<AlertRuleView> = state
        .alerts
        .config_rules
        .iter()
        .map(|(id, r)| view(id.clone(), "config", r, None))
        .collect();
    for s in state.store.alert_rules().await? {
        match Rule::from_json(&s.rule) {
            Ok(r) => out.push(view(s.id.to_string(), "api", &r, Some(s.updated_at))),
            Err(e) => tracing::error!(id = s.id, error = %e, "stored alert rule cannot be read"),
        }
    }
    Ok(axum::Json(out).into_response())
}

/// Creates a rule (needs the bearer token).
#[utoipa::path(post, path = "/api/v1/alerts", tag = "alerts",
    request_body(content = Object, description = "A rule, such as `{\"kind\":\"price_above\",\"exchange\":\"binance\",\"instrument\":\"BTC-USDT\",\"level\":\"70000\"}`.", content_type = "application/json"),
    responses(
        (status = 201, description = "Created.", body = AlertRuleView),
        (status = 400, description = "A bad rule.", body = crate::error::ErrorBody),
        (status = 401, description = "No or a wrong bearer token.", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub(crate) async fn create(
    State(state): State<ApiState>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let rule = read_rule(&state, &body)?;
    let json = serde_json::to_string(&rule).map_err(|e| ApiError::Internal(e.to_string()))?;
    let id = state
        .store
        .put_alert_rule(None, &json)
        .await?
        .ok_or_else(|| ApiError::Internal("the store gave no id".into()))?;
    state.alerts.reload.notify_one();
    Ok((
        StatusCode::CREATED,
        axum::Json(view(id.to_string(), "api", &rule, Some(Ts::now()))),
    )
        .into_response())
}

/// One rule.
#[utoipa::path(get, path = "/api/v1/alerts/{id}", tag = "alerts",
    params(("id" = String, Path, description = "`config:N` or a number.")),
    responses(
        (status = 200, description = "The rule.", body = AlertRuleView),
        (status = 404, description = "No such rule.", body = crate::error::ErrorBody),
    ))]
pub(crate) async fn get(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    if let Some((_, r)) = state.alerts.config_rules.iter().find(|(i, _)| *i == id) {
        return Ok(axum::Json(view(id, "config", r, None)).into_response());
    }
    let n: i64 = id
        .parse()
        .map_err(|_| ApiError::NotFound(format!("no alert rule `{id}`")))?;
    let stored = state
        .store
        .alert_rules()
        .await?
        .into_iter()
        .find(|s| s.id == n)
        .ok_or_else(|| ApiError::NotFound(format!("no alert rule `{id}`")))?;
    let rule = Rule::from_json(&stored.rule).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(axum::Json(view(id, "api", &rule, Some(stored.updated_at))).into_response())
}

/// Replaces a rule (needs the bearer token).
#[utoipa::path(put, path = "/api/v1/alerts/{id}", tag = "alerts",
    params(("id" = String, Path, description = "The rule's number.")),
    request_body(content = Object, description = "The new rule.", content_type = "application/json"),
    responses(
        (status = 200, description = "Replaced.", body = AlertRuleView),
        (status = 400, description = "A bad rule.", body = crate::error::ErrorBody),
        (status = 401, description = "No or a wrong bearer token.", body = crate::error::ErrorBody),
        (status = 404, description = "No such rule.", body = crate::error::ErrorBody),
        (status = 409, description = "A rule from the config file.", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub(crate) async fn replace(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let n = stored_id(&state, &id)?;
    let rule = read_rule(&state, &body)?;
    let json = serde_json::to_string(&rule).map_err(|e| ApiError::Internal(e.to_string()))?;
    state
        .store
        .put_alert_rule(Some(n), &json)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no alert rule `{id}`")))?;
    state.alerts.reload.notify_one();
    Ok(axum::Json(view(id, "api", &rule, Some(Ts::now()))).into_response())
}

/// Deletes a rule (needs the bearer token).
#[utoipa::path(delete, path = "/api/v1/alerts/{id}", tag = "alerts",
    params(("id" = String, Path, description = "The rule's number.")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 401, description = "No or a wrong bearer token.", body = crate::error::ErrorBody),
        (status = 404, description = "No such rule.", body = crate::error::ErrorBody),
        (status = 409, description = "A rule from the config file.", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub(crate) async fn delete(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let n = stored_id(&state, &id)?;
    if !state.store.delete_alert_rule(n).await? {
        return Err(ApiError::NotFound(format!("no alert rule `{id}`")));
    }
    state.alerts.reload.notify_one();
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The latest firings, newest first, with their delivery results.
#[utoipa::path(get, path = "/api/v1/alerts/firings", tag = "alerts",
    params(("limit" = Option<usize>, Query, description = "At most this many (default 100).")),
    responses(
        (status = 200, description = "Firings.", body = [FiringView]),
        (status = 400, description = "A bad parameter.", body = crate::error::ErrorBody),
    ))]
pub(crate) async fn firings(
    State(state): State<ApiState>,
    Params(q): Params,
) -> Result<Response, ApiError> {
    let limit = params::limit(&q, 100)?.min(10_000);
    let out: Vec<FiringView> = state
        .store
        .firings(limit)
        .await?
        .into_iter()
        .map(|f| FiringView {
            id: f.id,
            rule_id: f.rule_id,
            fired_at: f.fired_at,
            firing: serde_json::from_str(&f.firing).unwrap_or_default(),
            deliveries: f.deliveries.and_then(|d| serde_json::from_str(&d).ok()),
        })
        .collect();
    Ok(axum::Json(out).into_response())
}

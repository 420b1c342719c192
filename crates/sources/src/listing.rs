//! A venue's instrument list, asked for before live capture starts: every
//! configured instrument must be listed and trading, or the start is refused
//! with each refused symbol named. Venues that publish one say where in
//! their [`crate::venues::Venue::listing`].

use ck_bus::{Event, Origin, RawMessage};
use ck_model::{Instrument, Ts};

use crate::history::HistoryError;
use crate::parse::ParseError;
use crate::rest::RestClient;
use crate::venues::Venue;

/// Where a venue lists its instruments, and what it calls trading.
#[derive(Debug, Clone, Copy)]
pub struct ListingRequest {
    /// The REST path of the list (its parser reads the answer into
    /// [`Event::Instrument`]s).
    pub path: &'static str,
    /// Its weight against the venue's budget.
    pub weight: u32,
    /// The statuses of an instrument that trades (`TRADING`).
    pub trading: &'static [&'static str],
}

/// The instrument list of `venue`, as a raw REST message (for the tape and
/// the parser), or `None` where the venue has no list to check.
///
/// # Errors
/// When the request fails (after the client's retries).
pub async fn fetch(venue: &Venue, client: &RestClient) -> Result<Option<RawMessage>, HistoryError> {
    let Some(request) = venue.listing else {
        return Ok(None);
    };
    let response = client.get(request.path, request.weight).await?;
    Ok(Some(RawMessage {
        exchange: venue.exchange,
        ts_received: Ts::now(),
        origin: Origin::Rest { url: response.url },
        data: response.body,
    }))
}

/// Checks that every one of `instruments` is in `listing` (what [`fetch`]
/// returned) with a trading status.
///
/// # Errors
/// When the list cannot be read, or names every instrument it refuses and
/// why (not listed, or its status).
pub fn check(
    venue: &Venue,
    listing: &RawMessage,
    instruments: &[Instrument],
) -> Result<(), ParseError> {
    let trading = venue.listing.map_or(&[][..], |l| l.trading);
    let mut events = Vec::new();
    (venue.parser)().parse(listing, &mut events)?;
    let listed: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Instrument(info) => Some(info),
            _ => None,
        })
        .collect();
    let mut refused = Vec::new();
    for instrument in instruments {
        let native = venue.exchange.native_symbol(instrument);
        match listed.iter().find(|info| &info.instrument == instrument) {
            None => refused.push(format!("`{native}` ({instrument}) is not listed")),
            Some(info) => {
                if let Some(status) = &info.status
                    && !trading.contains(&status.as_str())
                {
                    refused.push(format!(
                        "`{}` ({instrument}) is {status} (delisted or halted), not {}",
                        info.native_symbol,
                        trading.join(" or ")
                    ));
                }
            }
        }
    }
    if refused.is_empty() {
        Ok(())
    } else {
        Err(ParseError::Venue {
            exchange: venue.exchange,
            message: format!("refusing to subscribe: {}", refused.join("; ")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ck_model::Exchange;

    #[test]
    fn unknown_and_delisted_symbols_are_refused_by_name() {
        let body = r#"{"symbols":[{"symbol":"BTCUSDT","status":"TRADING","baseAsset":"BTC","quoteAsset":"USDT"},{"symbol":"LUNAUSDT","status":"BREAK","baseAsset":"LUNA","quoteAsset":"USDT"}]}"#;
        let listing = RawMessage {
            exchange: Exchange::Binance,
            ts_received: Ts(1),
            origin: Origin::Rest {
                url: "https://api.binance.com/api/v3/exchangeInfo".into(),
            },
            data: body.into(),
        };
        let venue = crate::venues::venue(Exchange::Binance).expect("binance");
        let i = |s: &str| Instrument::parse(s).expect("i");
        check(venue, &listing, &[i("BTC-USDT")]).expect("listed");
        let err = check(
            venue,
            &listing,
            &[i("BTC-USDT"), i("LUNA-USDT"), i("FOO-USDT")],
        )
        .expect_err("refused")
        .to_string();
        assert!(err.contains("`LUNAUSDT` (LUNA-USDT) is BREAK"), "{err}");
        assert!(err.contains("`FOOUSDT` (FOO-USDT) is not listed"), "{err}");
        assert!(!err.contains("BTCUSDT"), "{err}");
        let unreadable = RawMessage {
            data: "{".into(),
            ..listing
        };
        assert!(check(venue, &unreadable, &[i("BTC-USDT")]).is_err());
    }
}

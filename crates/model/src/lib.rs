//! The candlekeep domain model. Pure data, no IO, no async.
//!
//! Start with [`Trade`] and [`Candle`]; prices and sizes are [`Decimal`]s parsed
//! exactly from the exchange's own text, times are [`Ts`] (nanoseconds since the
//! Unix epoch, UTC). Instruments are identified by [`Exchange`] plus a normalized
//! [`Instrument`] (`BASE-QUOTE`); [`InstrumentInfo`] keeps the exchange-native symbol.

#![warn(missing_docs)]

mod candle;
mod decimal;
mod exchange;
mod gap;
mod instrument;
mod interval;
mod time;
mod trade;

pub use candle::{
    Candle, CandleField, CandleRecord, CandleState, DecimalText, EmptyIntervalPolicy, FieldValue,
    RecordFields,
};
pub use decimal::{Decimal, DecimalError, MAX_SCALE, pow10};
pub use exchange::{Exchange, ExchangeFacts, FACTS, SymbolStyle};
pub use gap::{BackfillProgress, Gap, GapKind, GapState};
pub use instrument::{Instrument, InstrumentError, InstrumentInfo, normalize_asset};
pub use interval::{Interval, IntervalError};
pub use time::{NANOS_PER_SEC, Ts, TsError, parse_span};
pub use trade::{Quote, Side, Trade, TradeId};

#[cfg(feature = "openapi")]
mod openapi {
    //! Decimals and times are strings on the wire: exact decimal text and
    //! RFC 3339 UTC.
    use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaType, Type};
    use utoipa::openapi::{KnownFormat, RefOr, SchemaFormat};

    fn string(description: &str, example: &str, format: Option<SchemaFormat>) -> RefOr<Schema> {
        let mut b = ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::String))
            .description(Some(description))
            .examples([serde_json::Value::String(example.to_owned())]);
        if let Some(f) = format {
            b = b.format(Some(f));
        }
        RefOr::T(Schema::Object(b.build()))
    }

    macro_rules! string_schema {
        ($t:ty, $description:expr, $example:expr) => {
            impl utoipa::PartialSchema for $t {
                fn schema() -> RefOr<Schema> {
                    string($description, $example, None)
                }
            }
            impl utoipa::ToSchema for $t {}
        };
    }

    string_schema!(
        crate::Decimal,
        "An exact decimal, as the exchange wrote it.",
        "61837.63000000"
    );
    fn one_of(description: &str, values: Vec<String>, example: &str) -> RefOr<Schema> {
        RefOr::T(Schema::Object(
            ObjectBuilder::new()
                .schema_type(SchemaType::Type(Type::String))
                .description(Some(description))
                .enum_values(Some(values))
                .examples([serde_json::Value::String(example.to_owned())])
                .build(),
        ))
    }

    impl utoipa::PartialSchema for crate::Exchange {
        fn schema() -> RefOr<Schema> {
            let names = crate::Exchange::ALL
                .iter()
                .map(|e| e.as_str().to_owned())
                .collect();
            one_of("An exchange.", names, "binance")
        }
    }
    impl utoipa::ToSchema for crate::Exchange {}

    impl utoipa::PartialSchema for crate::Interval {
        fn schema() -> RefOr<Schema> {
            let names = crate::Interval::names()
                .into_iter()
                .map(str::to_owned)
                .collect();
            one_of(
                "A candle interval (1w starts Monday; 1M is the calendar month).",
                names,
                "1m",
            )
        }
    }
    impl utoipa::ToSchema for crate::Interval {}

    impl utoipa::PartialSchema for crate::Instrument {
        fn schema() -> RefOr<Schema> {
            RefOr::T(Schema::Object(
                ObjectBuilder::new()
                    .schema_type(SchemaType::Type(Type::String))
                    .description(Some("An instrument, BASE-QUOTE."))
                    .pattern(Some("^[A-Za-z0-9]+-[A-Za-z0-9]+$"))
                    .examples([serde_json::Value::String("BTC-USDT".to_owned())])
                    .build(),
            ))
        }
    }
    impl utoipa::ToSchema for crate::Instrument {}
    string_schema!(crate::Side, "The taker's side: buy or sell.", "buy");

    impl utoipa::PartialSchema for crate::Ts {
        fn schema() -> RefOr<Schema> {
            string(
                "A time, RFC 3339 in UTC with up to nanoseconds.",
                "2024-08-08T23:54:00Z",
                Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)),
            )
        }
    }
    impl utoipa::ToSchema for crate::Ts {}

    string_schema!(
        crate::TradeId,
        "The venue's trade id, always as a string (numeric ids exceed 2^53, past JavaScript's exact integers).",
        "2290000001189048101"
    );
}

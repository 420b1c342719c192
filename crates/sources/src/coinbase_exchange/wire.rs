//! Coinbase Exchange (formerly Coinbase Pro) wire types.

use serde::Deserialize;

/// Any feed message; `type` says which fields are present.
///
/// `match`: `{"type":"match","trade_id":280232,"maker_order_id":"…","taker_order_id":"…","side":"sell","size":"985","price":"0.00001305","product_id":"SKL-BTC","sequence":177100030,"time":"2021-04-17T16:43:37.089723Z"}`
///
/// `ticker`: `{"type":"ticker","sequence":333938798,"product_id":"BAND-GBP","price":"14.7775",…,"best_bid":"14.7550","best_ask":"14.8060","side":"buy","time":"2021-04-17T16:43:30.244075Z","trade_id":881613,"last_size":"0.04"}`
#[derive(Debug, Deserialize)]
pub(crate) struct CoinbaseMessage<'a> {
    #[serde(rename = "type", borrow)]
    pub(crate) kind: &'a str,
    #[serde(borrow, default)]
    pub(crate) product_id: Option<&'a str>,
    #[serde(default)]
    pub(crate) trade_id: Option<u64>,
    /// On `match`, the **maker's** side.
    #[serde(borrow, default)]
    pub(crate) side: Option<&'a str>,
    #[serde(borrow, default)]
    pub(crate) size: Option<&'a str>,
    #[serde(borrow, default)]
    pub(crate) price: Option<&'a str>,
    #[serde(borrow, default)]
    pub(crate) time: Option<&'a str>,
    #[serde(borrow, default)]
    pub(crate) best_bid: Option<&'a str>,
    #[serde(borrow, default)]
    pub(crate) best_bid_size: Option<&'a str>,
    #[serde(borrow, default)]
    pub(crate) best_ask: Option<&'a str>,
    #[serde(borrow, default)]
    pub(crate) best_ask_size: Option<&'a str>,
    #[serde(default)]
    pub(crate) message: Option<String>,
    #[serde(default)]
    pub(crate) reason: Option<String>,
}

/// One entry of `GET /products`.
#[derive(Debug, Deserialize)]
pub(crate) struct CoinbaseProduct {
    pub(crate) id: String,
    pub(crate) base_currency: String,
    pub(crate) quote_currency: String,
    #[serde(default)]
    pub(crate) status: Option<String>,
}

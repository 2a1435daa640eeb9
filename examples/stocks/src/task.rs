//! The `stocks.refresh` task, shared by the service and the worker.

use celeriac_shared::Task;
use serde::{Deserialize, Serialize};

/// The queue stock refreshes go to.
pub const STOCKS_QUEUE: &str = "stocks";

/// Fetches the current price of some stocks.
#[derive(Debug)]
pub struct RefreshStocks;

/// Which stocks to refresh, and how slow the simulated price API is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefreshArgs {
    /// Ticker symbols, e.g. `ACME`.
    pub symbols: Vec<String>,
    /// How long the price API takes per symbol, in milliseconds.
    pub latency_ms: u64,
}

/// One stock's price.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quote {
    /// The ticker symbol.
    pub symbol: String,
    /// The price in dollars.
    pub price: f64,
    /// When the price was fetched, ISO-8601 UTC.
    pub as_of: String,
}

impl Task for RefreshStocks {
    const NAME: &'static str = "stocks.refresh";
    type Args = RefreshArgs;
    type Output = Vec<Quote>;
}

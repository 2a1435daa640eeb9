//! The worker's side: a simulated slow price API and the
//! `stocks.refresh` handler.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use celeriac_worker::{Registry, TaskContext, TaskError};
use tracing::Instrument;

use crate::{Quote, RefreshArgs, RefreshStocks};

/// A registry with the `stocks.refresh` handler.
pub fn registry() -> Registry {
    let mut registry = Registry::new();
    registry.register::<RefreshStocks, _, _>(refresh);
    registry
}

/// `stocks.refresh(symbols, latency_ms)`: one price API call per symbol,
/// each in its own `fetch price` span (inside the task's `process` span).
/// A symbol that is not 1 to 8 ASCII letters is rejected (dead-lettered):
/// retrying would not make it valid.
pub async fn refresh(args: RefreshArgs, ctx: TaskContext) -> Result<Vec<Quote>, TaskError> {
    if let Some(bad) = args.symbols.iter().find(|s| !valid_symbol(s)) {
        return Err(TaskError::reject(format!("`{bad}` is not a ticker symbol")));
    }
    let latency = Duration::from_millis(args.latency_ms);
    let mut quotes = Vec::with_capacity(args.symbols.len());
    for symbol in &args.symbols {
        let span = tracing::info_span!("fetch price", symbol = %symbol, task_id = ctx.id());
        quotes.push(fetch_price(symbol, latency).instrument(span).await);
    }
    tracing::info!(
        task_id = ctx.id(),
        task = ctx.task(),
        count = quotes.len(),
        "prices fetched"
    );
    Ok(quotes)
}

/// The simulated price API: waits `latency`, then answers a price that
/// depends on the symbol and drifts every ten seconds.
pub async fn fetch_price(symbol: &str, latency: Duration) -> Quote {
    tokio::time::sleep(latency).await;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let seed = symbol.bytes().fold(now.as_secs() / 10, |hash, byte| {
        hash.wrapping_mul(31).wrapping_add(u64::from(byte))
    });
    let cents = 1_000 + seed % 99_000;
    Quote {
        symbol: symbol.to_owned(),
        price: cents as f64 / 100.0,
        as_of: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    }
}

fn valid_symbol(symbol: &str) -> bool {
    (1..=8).contains(&symbol.len()) && symbol.bytes().all(|b| b.is_ascii_alphabetic())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_price_is_positive_and_names_its_symbol() {
        let quote = fetch_price("ACME", Duration::ZERO).await;
        assert_eq!(quote.symbol, "ACME");
        assert!(quote.price >= 10.0 && quote.price < 1000.0, "{quote:?}");
    }

    #[test]
    fn symbols_are_short_runs_of_letters() {
        assert!(valid_symbol("ACME") && valid_symbol("a"));
        assert!(!valid_symbol("") && !valid_symbol("TOOLONGNAME") && !valid_symbol("A1"));
    }
}

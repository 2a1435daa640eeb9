//! The service's side of the results: a handler on the named reply queue
//! that every replica of the service shares, so a refresh's result lands
//! even when the replica that sent it died meanwhile.

use std::convert::Infallible;
use std::sync::Arc;

use celeriac_producer::{Producer, ResultListener};
use celeriac_shared::{ResultMessage, Task, decode_output};
use tracing::info;

use crate::{Quote, RefreshStocks, StockBook};

/// The named reply queue the service's replicas share by default.
pub const REPLY_QUEUE: &str = "stocks-service.replies";

/// Starts recording every refresh result that reaches this replica in
/// `book`. `producer` must have a named reply queue
/// ([`ProducerConfig::reply_queue`](celeriac_producer::ProducerConfig::reply_queue())).
///
/// Updating the book cannot fail, so each result is acked once recorded;
/// a replica that dies before that leaves the result to another replica.
pub async fn listen_for_results(
    producer: &Producer,
    book: Arc<StockBook>,
) -> Result<ResultListener, celeriac_producer::Error> {
    producer
        .on_result(move |result: ResultMessage| {
            record(&book, &result);
            std::future::ready(Ok::<(), Infallible>(()))
        })
        .await
}

/// Records one final result in `book`.
fn record(book: &StockBook, result: &ResultMessage) {
    let task_id = result.task_id.as_str();
    let Some(outcome) = result.outcome() else {
        return;
    };
    let quotes = outcome.map_err(|failure| failure.message).and_then(|raw| {
        decode_output::<Vec<Quote>>(RefreshStocks::NAME, raw).map_err(|err| err.to_string())
    });
    match quotes {
        Ok(quotes) => {
            info!(task_id, count = quotes.len(), "refresh result recorded");
            book.succeeded(task_id, quotes);
        }
        Err(error) => {
            info!(task_id, error = %error, "refresh failure recorded");
            book.failed(task_id, error);
        }
    }
}

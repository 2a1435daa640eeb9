//! The service's state, in memory: the stocks and the refresh tasks.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use serde::Serialize;

use crate::Quote;

/// How many finished tasks are remembered for `GET /tasks/{id}`.
const KEPT_TASKS: usize = 1000;

/// A stock's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StockStatus {
    /// Never refreshed.
    Unknown,
    /// A refresh is running.
    Loading,
    /// The price is from the last refresh.
    Ready,
    /// The last refresh failed; the price, if any, is older.
    Failed,
}

/// One stock as `GET /stocks` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stock {
    /// The ticker symbol.
    pub symbol: String,
    /// Its state.
    pub status: StockStatus,
    /// The last price fetched.
    pub price: Option<f64>,
    /// When that price was fetched.
    pub as_of: Option<String>,
    /// The refresh task that last touched it.
    pub task_id: Option<String>,
}

/// A refresh task's state, as Celery names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskStatus {
    /// Sent, no result yet.
    Pending,
    /// Finished with quotes.
    Success,
    /// Failed, timed out or lost.
    Failure,
}

/// A refresh task as `GET /tasks/{id}` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskRecord {
    /// The task id.
    pub id: String,
    /// Its state.
    pub state: TaskStatus,
    /// The quotes, on success.
    pub result: Option<Vec<Quote>>,
    /// Why it failed.
    pub error: Option<String>,
}

/// The stocks and the refresh tasks, behind a lock.
#[derive(Debug)]
pub struct StockBook {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    stocks: BTreeMap<String, Stock>,
    tasks: HashMap<String, TaskRecord>,
    /// Task ids oldest first, to forget the oldest beyond [`KEPT_TASKS`].
    order: VecDeque<String>,
}

impl StockBook {
    /// A book of these symbols, none fetched yet.
    pub fn new<S: Into<String>>(symbols: impl IntoIterator<Item = S>) -> Self {
        let stocks = symbols
            .into_iter()
            .map(Into::into)
            .map(|symbol: String| {
                let stock = Stock {
                    symbol: symbol.clone(),
                    status: StockStatus::Unknown,
                    price: None,
                    as_of: None,
                    task_id: None,
                };
                (symbol, stock)
            })
            .collect();
        Self {
            inner: Mutex::new(Inner {
                stocks,
                tasks: HashMap::new(),
                order: VecDeque::new(),
            }),
        }
    }

    /// Every stock, by symbol.
    pub fn stocks(&self) -> Vec<Stock> {
        self.lock().stocks.values().cloned().collect()
    }

    /// The symbols in `wanted` this book does not know.
    pub fn unknown<'a>(&self, wanted: &'a [String]) -> Vec<&'a str> {
        let inner = self.lock();
        wanted
            .iter()
            .filter(|symbol| !inner.stocks.contains_key(*symbol))
            .map(String::as_str)
            .collect()
    }

    /// Every symbol.
    pub fn symbols(&self) -> Vec<String> {
        self.lock().stocks.keys().cloned().collect()
    }

    /// A refresh of `symbols` was sent as task `task_id`: they are loading.
    pub fn loading(&self, task_id: &str, symbols: &[String]) -> Vec<Stock> {
        let mut inner = self.lock();
        for symbol in symbols {
            if let Some(stock) = inner.stocks.get_mut(symbol) {
                stock.status = StockStatus::Loading;
                stock.task_id = Some(task_id.to_owned());
            }
        }
        let record = TaskRecord {
            id: task_id.to_owned(),
            state: TaskStatus::Pending,
            result: None,
            error: None,
        };
        inner.remember(record);
        symbols
            .iter()
            .filter_map(|s| inner.stocks.get(s).cloned())
            .collect()
    }

    /// Task `task_id` answered: its stocks are ready (unless a newer
    /// refresh took them over meanwhile).
    ///
    /// A task this book does not know (another replica of the service
    /// sent it, and died) is adopted: it is remembered, and its quotes
    /// update the stocks that no known refresh is loading and whose price
    /// is older.
    pub fn succeeded(&self, task_id: &str, quotes: Vec<Quote>) {
        let mut inner = self.lock();
        let adopted = inner.adopt(task_id);
        for quote in &quotes {
            let stock = if adopted {
                inner.stock_older_than(quote)
            } else {
                inner.stock_of(task_id, &quote.symbol)
            };
            if let Some(stock) = stock {
                stock.status = StockStatus::Ready;
                stock.price = Some(quote.price);
                stock.as_of = Some(quote.as_of.clone());
                stock.task_id = Some(task_id.to_owned());
            }
        }
        if let Some(record) = inner.tasks.get_mut(task_id) {
            record.state = TaskStatus::Success;
            record.result = Some(quotes);
        }
    }

    /// Task `task_id` failed: its stocks keep their old price, marked
    /// failed. A task this book does not know is adopted and remembered as
    /// failed (which stocks it was for is not known).
    pub fn failed(&self, task_id: &str, error: String) {
        let mut inner = self.lock();
        inner.adopt(task_id);
        let symbols: Vec<String> = inner.stocks.keys().cloned().collect();
        for symbol in symbols {
            if let Some(stock) = inner.stock_of(task_id, &symbol) {
                stock.status = StockStatus::Failed;
            }
        }
        if let Some(record) = inner.tasks.get_mut(task_id) {
            record.state = TaskStatus::Failure;
            record.error = Some(error);
        }
    }

    /// The task `task_id`, if it is remembered.
    pub fn task(&self, task_id: &str) -> Option<TaskRecord> {
        self.lock().tasks.get(task_id).cloned()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Inner {
    fn remember(&mut self, record: TaskRecord) {
        self.order.push_back(record.id.clone());
        self.tasks.insert(record.id.clone(), record);
        while self.order.len() > KEPT_TASKS {
            if let Some(oldest) = self.order.pop_front() {
                self.tasks.remove(&oldest);
            }
        }
    }

    /// Remembers `task_id` as pending if this book does not know it;
    /// whether it did so.
    fn adopt(&mut self, task_id: &str) -> bool {
        if self.tasks.contains_key(task_id) {
            return false;
        }
        self.remember(TaskRecord {
            id: task_id.to_owned(),
            state: TaskStatus::Pending,
            result: None,
            error: None,
        });
        true
    }

    /// The stock of `quote` if no refresh is loading it and its price is
    /// older than the quote (timestamps of one format compare as text).
    fn stock_older_than(&mut self, quote: &Quote) -> Option<&mut Stock> {
        self.stocks.get_mut(&quote.symbol).filter(|stock| {
            stock.status != StockStatus::Loading
                && stock
                    .as_of
                    .as_deref()
                    .is_none_or(|as_of| as_of < quote.as_of.as_str())
        })
    }

    /// The stock `symbol` if task `task_id` is still the one refreshing it.
    fn stock_of(&mut self, task_id: &str, symbol: &str) -> Option<&mut Stock> {
        self.stocks
            .get_mut(symbol)
            .filter(|stock| stock.task_id.as_deref() == Some(task_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quote(symbol: &str, price: f64) -> Quote {
        Quote {
            symbol: symbol.into(),
            price,
            as_of: "2026-01-01T00:00:00.000Z".into(),
        }
    }

    #[test]
    fn a_refresh_goes_from_loading_to_ready() {
        let book = StockBook::new(["ACME", "GLOBEX"]);
        let loading = book.loading("t1", &["ACME".into()]);
        assert_eq!(loading[0].status, StockStatus::Loading);
        assert_eq!(book.task("t1").unwrap().state, TaskStatus::Pending);
        book.succeeded("t1", vec![quote("ACME", 12.5)]);
        let stocks = book.stocks();
        assert_eq!(stocks[0].status, StockStatus::Ready);
        assert_eq!(stocks[0].price, Some(12.5));
        assert_eq!(stocks[1].status, StockStatus::Unknown, "GLOBEX untouched");
        assert_eq!(book.task("t1").unwrap().state, TaskStatus::Success);
    }

    #[test]
    fn a_late_result_does_not_overwrite_a_newer_refresh() {
        let book = StockBook::new(["ACME"]);
        book.loading("old", &["ACME".into()]);
        book.loading("new", &["ACME".into()]);
        book.succeeded("old", vec![quote("ACME", 1.0)]);
        assert_eq!(book.stocks()[0].status, StockStatus::Loading);
        book.failed("new", "boom".into());
        assert_eq!(book.stocks()[0].status, StockStatus::Failed);
        assert_eq!(book.task("new").unwrap().error.as_deref(), Some("boom"));
    }

    #[test]
    fn a_result_of_a_task_another_replica_sent_is_adopted() {
        let book = StockBook::new(["ACME", "GLOBEX"]);
        book.loading("mine", &["GLOBEX".into()]);
        book.succeeded("theirs", vec![quote("ACME", 3.0), quote("GLOBEX", 4.0)]);
        let stocks = book.stocks();
        assert_eq!(stocks[0].status, StockStatus::Ready);
        assert_eq!(stocks[0].price, Some(3.0));
        assert_eq!(stocks[0].task_id.as_deref(), Some("theirs"));
        assert_eq!(
            stocks[1].status,
            StockStatus::Loading,
            "my refresh is newer"
        );
        assert_eq!(book.task("theirs").unwrap().state, TaskStatus::Success);
        book.failed("lost", "boom".into());
        assert_eq!(book.task("lost").unwrap().state, TaskStatus::Failure);
    }

    #[test]
    fn an_adopted_result_does_not_overwrite_a_newer_price() {
        let book = StockBook::new(["ACME"]);
        book.loading("new", &["ACME".into()]);
        let mut newer = quote("ACME", 2.0);
        newer.as_of = "2026-06-01T00:00:00.000Z".into();
        book.succeeded("new", vec![newer]);
        book.succeeded("old", vec![quote("ACME", 1.0)]);
        assert_eq!(book.stocks()[0].price, Some(2.0));
    }

    #[test]
    fn old_tasks_are_forgotten() {
        let book = StockBook::new(["ACME"]);
        for i in 0..=KEPT_TASKS {
            book.loading(&i.to_string(), &[]);
        }
        assert!(book.task("0").is_none());
        assert!(book.task(&KEPT_TASKS.to_string()).is_some());
    }
}

//! The typed task contract shared by producers and workers.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A task: its registered name, the type of its arguments and the type of
/// its result.
///
/// Producers send `T::Args` and get `T::Output` back; workers register a
/// handler for `T`. The name is the dispatch key on the wire, so a Python
/// Celery task with the same name and argument names is interchangeable.
///
/// ```
/// use celeriac_shared::Task;
/// use serde::{Deserialize, Serialize};
///
/// /// `resize(path, width)` in the `images` namespace.
/// pub struct Resize;
///
/// #[derive(Serialize, Deserialize)]
/// pub struct ResizeArgs {
///     pub path: String,
///     pub width: u32,
/// }
///
/// impl Task for Resize {
///     const NAME: &'static str = "images.resize";
///     type Args = ResizeArgs; // travels as kwargs {"path": .., "width": ..}
///     type Output = String;
/// }
/// ```
pub trait Task: Send + Sync + 'static {
    /// The task name, e.g. `"reports.build"`; routing rules match it.
    const NAME: &'static str;
    /// The arguments: a struct with named fields travels as kwargs, a tuple
    /// as positional args.
    type Args: Serialize + DeserializeOwned + Send + 'static;
    /// The result value.
    type Output: Serialize + DeserializeOwned + Send + 'static;
}

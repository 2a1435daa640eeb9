//! `celeriac inspect`, `celeriac revoke` and `celeriac control`: Celery's
//! remote control, answered by Rust and Python workers alike.

use std::process::ExitCode;

use celeriac_admin::Control;
use celeriac_admin::output::control as output;
use celeriac_producer::Producer;

use crate::cli::{ControlAction, ControlArgs, InspectArgs, RevokeArgs, Targets};

/// The remote control addressing `targets`.
fn control_for(producer: &Producer, targets: &Targets) -> Control {
    Control::new(producer)
        .with_destination(targets.destination.clone())
        .with_timeout(targets.timeout)
}

/// `celeriac inspect <method>`: one block per worker that replied (or
/// `{hostname: reply}` with `--json`); exits 1 when none did.
pub(crate) async fn inspect(producer: &Producer, args: InspectArgs) -> anyhow::Result<ExitCode> {
    let control = control_for(producer, &args.targets);
    let method = args.method.command();
    let replies = control.inspect(method).await?;
    report(&control, method, &replies, args.json)
}

/// `celeriac revoke <id>...`: appends the revocation to the stream, then
/// prints which workers acknowledged Celery's `revoke` command.
pub(crate) async fn revoke(producer: &Producer, args: RevokeArgs) -> anyhow::Result<ExitCode> {
    let control = control_for(producer, &args.targets);
    let revoked = control.revoke(&args.task_ids, args.terminate).await?;
    print!("{}", output::revoked(&revoked, control.timeout()));
    if let Some(silent) = output::missing(control.destination(), &revoked.replies) {
        eprintln!("{silent}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `celeriac control <action>`.
pub(crate) async fn control(producer: &Producer, args: ControlArgs) -> anyhow::Result<ExitCode> {
    let control = control_for(producer, &args.targets);
    let replies = match args.action {
        ControlAction::EnableEvents => control.enable_events().await?,
        ControlAction::DisableEvents => control.disable_events().await?,
        ControlAction::Shutdown => {
            let destination = control.destination().map(<[String]>::to_vec);
            control.shutdown(destination).await?;
            println!("{}", output::shutdown_sent(control.destination()));
            return Ok(ExitCode::SUCCESS);
        }
    };
    let method = match args.action {
        ControlAction::EnableEvents => "enable_events",
        _ => "disable_events",
    };
    report(&control, method, &replies, false)
}

/// Prints the replies; exit code 1 when no worker replied.
fn report(
    control: &Control,
    method: &str,
    replies: &celeriac_admin::Replies,
    as_json: bool,
) -> anyhow::Result<ExitCode> {
    if replies.is_empty() {
        if as_json {
            println!("{}", output::json(replies)?);
        }
        eprintln!(
            "{}",
            output::no_reply(control.destination(), control.timeout())
        );
        return Ok(ExitCode::FAILURE);
    }
    match as_json {
        true => println!("{}", output::json(replies)?),
        false => print!("{}", output::text(method, replies)),
    }
    if let Some(silent) = output::missing(control.destination(), replies) {
        eprintln!("{silent}");
    }
    Ok(ExitCode::SUCCESS)
}

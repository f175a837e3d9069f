//! `host-local-etcd`: the plugin with both stores, disk and etcd. `host-local`
//! hands it the calls whose configuration asks for the etcd store (see
//! `host_local::delegate`); it can also be run directly as the plugin.

fn main() {
    let lookup = |k: &str| std::env::var_os(k);
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let outcome = host_local::run(
        &lookup,
        &mut std::io::stdin().lock(),
        &mut stdout.lock(),
        &mut stderr.lock(),
    );
    use std::io::Write;
    calls_for_the_benchmark();
    // A failed flush leaves nothing to report it to; the exit status stays the call's.
    let _ = stdout.lock().flush();
    let _ = stderr.lock().flush();
    std::process::exit(outcome.exit_code)
}

/// With `HOST_LOCAL_ETCD_CALLS` naming a file, appends the etcd calls this
/// invocation made (`{"reads":n,"txns":m}`): how the benchmark counts
/// transactions per ADD.
fn calls_for_the_benchmark() {
    use std::sync::atomic::Ordering;
    let Some(path) = std::env::var_os("HOST_LOCAL_ETCD_CALLS") else {
        return;
    };
    let c = &host_local::store::etcd::CALLS;
    let line = format!(
        "{{\"reads\":{},\"txns\":{}}}\n",
        c.reads.load(Ordering::Relaxed),
        c.txns.load(Ordering::Relaxed)
    );
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path);
    // Diagnostics only: a file that cannot be written changes nothing of the call.
    let _ = f.and_then(|mut f| std::io::Write::write_all(&mut f, line.as_bytes()));
}

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
    // A failed flush leaves nothing to report it to; the exit status stays the call's.
    let _ = stdout.lock().flush();
    let _ = stderr.lock().flush();
    std::process::exit(outcome.exit_code)
}

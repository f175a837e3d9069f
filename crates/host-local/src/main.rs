//! The `host-local` executable: the process boundary only.

fn main() {
    let lookup = |k: &str| std::env::var_os(k);
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let outcome = host_local::run(
        &lookup,
        &mut stdin.lock(),
        &mut stdout.lock(),
        &mut stderr.lock(),
    );
    std::process::exit(outcome.exit_code);
}

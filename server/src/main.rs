//! `shoal-server`: reads redis-server-style flags or a config file, then serves until SIGTERM, SIGINT or
//! SHUTDOWN.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match shoal_server::run::main(args) {
        Ok(()) => {}
        Err(e) => {
            eprintln!("shoal-server: {e:#}");
            std::process::exit(1);
        }
    }
}

use clap::Parser;

/// dccore: master and agent of the dcform cluster core.
#[derive(Parser)]
#[command(name = "dccore", version = dccore::VERSION)]
struct Cli {}

fn main() {
    let _ = Cli::parse();
}

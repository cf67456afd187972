use clap::Parser;

fn main() {
    // A panic inside a simulated run is a finding the runner reports with its
    // seed; the default hook would also spray it over the progress bar.
    std::panic::set_hook(Box::new(|_| {}));
    let cli = kafsim::cli::Cli::parse();
    std::process::exit(kafsim::cli::main_with(cli));
}

fn main() -> std::process::ExitCode {
    kiroku::cli::main()
}

fn main() -> std::process::ExitCode {
    kiroku::allocator::configure();
    kiroku::cli::main()
}

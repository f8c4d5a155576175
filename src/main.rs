fn main() -> std::process::ExitCode {
    cnpg_autoresize::manager::cli::main()
}

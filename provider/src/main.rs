fn main() {
    eprintln!("terraform-provider-strata: not built yet");
    std::process::exit(1);
}

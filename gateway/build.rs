// The migrations are embedded at compile time (`sqlx::migrate!`), which cargo does not track:
// without this, a new migration file is left out of an incremental build.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}

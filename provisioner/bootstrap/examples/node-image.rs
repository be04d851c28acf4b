//! Builds (or reuses) the dcform node image: `cargo run -p dcform-bootstrap --example node-image [-- --force] [TAG]`.
//! Used by `.ci/setup-node-image.sh` until `dcform node-image build` is wired in.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut opts = dcform_bootstrap::node_image::NodeImageOptions::default();
    for arg in std::env::args().skip(1) {
        if arg == "--force" {
            opts.force = true;
        } else {
            opts.tag = arg;
        }
    }
    let info = dcform_bootstrap::node_image::ensure(&opts, &mut |line| eprintln!("{line}"))?;
    println!("{} {} ({})", info.tag, info.id, info.path);
    Ok(())
}

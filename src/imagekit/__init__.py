"""imagekit: one lock, two aligned images (Ray serving and scipy-notebook training), verified and promoted."""

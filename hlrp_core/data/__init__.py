"""Data: registry, embedded/mirror generators, episode index, sampler, loader, benchmark. TF is imported lazily."""

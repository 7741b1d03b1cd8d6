"""Bucket-level MOO inside the engines people train with: DDP, FSDP2, DeepSpeed ZeRO-2."""

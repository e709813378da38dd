"""The `fsobj` command (`main`, `s3_commands`) and the daemon that serves a store through
its front ends (`daemon`): the one place that assembles them."""

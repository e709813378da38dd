"""The FUSE front end: the kernel's requests turned into calls on the core
(`operations`, `listings`, `xattrs`), the core's entries as the kernel's attributes and
its caches kept true (`kernel`), refusals as errnos (`edge`), and the mount (`mount`).
The only package that imports pyfuse3."""

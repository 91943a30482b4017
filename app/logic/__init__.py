"""Pure logic: no faust, no I/O, no clock."""

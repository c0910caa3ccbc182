/* engine/lib/spool_writer.h - the one way a file enters a spool: written
 * as SPOOL/tmp/NAME, fsync'd, renamed to SPOOL/new/NAME without replacing
 * anything there (a reader never sees half a file; after the call returns
 * true the file survives a power loss once the directory is synced, which
 * the rename's own journal commit does on ext4/xfs). Used by
 * `sluice inject`, `sluice spoolgen` and DSNs. */
#ifndef SLUICE_SPOOL_WRITER_H
#define SLUICE_SPOOL_WRITER_H
#include <stdbool.h>
#include <stddef.h>

/* Creates SPOOL, SPOOL/tmp and SPOOL/new if missing. False with err set. */
bool spool_writer_prepare(const char *spool, char *err, size_t err_len);
/* Writes data as spool/new/name (see above); sync=false skips the fsync
 * (test spools only). False with err set; nothing is left behind then. */
bool spool_writer_put(const char *spool, const char *name, const void *data, size_t len,
                      bool sync, char *err, size_t err_len);
#endif

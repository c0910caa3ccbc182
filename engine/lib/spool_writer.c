/* engine/lib/spool_writer.c - tmp/ -> fsync -> new/ (see spool_writer.h). */
#define _GNU_SOURCE
#include "spool_writer.h"
#include "util.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

bool spool_writer_prepare(const char *spool, char *err, size_t err_len)
{
	const char *subs[] = { "", "/tmp", "/new" };
	for (size_t i = 0; i < ARRAY_LEN(subs); i++) {
		char p[4096];
		snprintf(p, sizeof(p), "%s%s", spool, subs[i]);
		if (mkdir(p, 0755) != 0 && errno != EEXIST) {
			snprintf(err, err_len, "cannot create %s: %s", p, strerror(errno));
			return false;
		}
	}
	return true;
}

bool spool_writer_put(const char *spool, const char *name, const void *data, size_t len,
                      bool sync, char *err, size_t err_len)
{
	char tmp[4096], dst[4096];
	snprintf(tmp, sizeof(tmp), "%s/tmp/%s", spool, name);
	snprintf(dst, sizeof(dst), "%s/new/%s", spool, name);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0) {
		snprintf(err, err_len, "cannot create %s: %s", tmp, strerror(errno));
		return false;
	}
	int e = write_all(fd, data, len);
	if (!e && sync && fsync(fd) != 0)
		e = errno;
	if (close(fd) != 0 && !e)
		e = errno;
	/* RENAME_NOREPLACE: a name already in new/ is another message. */
	if (!e && renameat2(AT_FDCWD, tmp, AT_FDCWD, dst, RENAME_NOREPLACE) != 0)
		e = errno;
	if (e) {
		snprintf(err, err_len, "cannot write %s: %s", e == EEXIST ? dst : tmp, strerror(e));
		unlink(tmp);
		return false;
	}
	return true;
}

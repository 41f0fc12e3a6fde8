/*
 * powerloss.c: an LD_PRELOAD shim that records what a process wrote and
 * synced, so a test can simulate a power loss after killing it.
 *
 * For every write to a file under RINGRAFT_POWERLOSS_DIR it appends
 *     W <offset> <length> <path>
 * to the side log RINGRAFT_POWERLOSS_LOG *before* performing the write, and
 * after every successful fdatasync/fsync of such a file
 *     S <path>
 * A test then treats every range written after a file's last S as lost by
 * the power failure: zeroed, garbled or cut off.
 *
 * RINGRAFT_POWERLOSS_DIE_AT=<n> makes the process SIGKILL itself just before
 * it performs the n-th recorded event (write or sync): an exact crash point,
 * e.g. between a segment header's write and its fdatasync.
 *
 * Intercepted: write, pwrite, pwrite64, writev, pwritev, pwritev64,
 * pwritev2, fdatasync, fsync (the engine writes with pwritev (pwrite64 before) and fdatasync; the
 * rest are there so a change of I/O call cannot slip by unrecorded).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

static int log_fd = -1;
static char prefix[PATH_MAX];
static size_t prefix_len;
static long die_at;
static atomic_long events;

__attribute__((constructor)) static void powerloss_init(void) {
    const char *log = getenv("RINGRAFT_POWERLOSS_LOG");
    const char *dir = getenv("RINGRAFT_POWERLOSS_DIR");
    const char *die = getenv("RINGRAFT_POWERLOSS_DIE_AT");
    if (!log || !dir) {
        return;
    }
    log_fd = (int)syscall(SYS_openat, AT_FDCWD, log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    snprintf(prefix, sizeof prefix, "%s/", dir);
    prefix_len = strlen(prefix);
    die_at = die ? atol(die) : 0;
}

/* Whether fd is a file under the watched directory; its path in `path`. */
static int tracked(int fd, char *path, size_t cap) {
    char link[64];
    if (log_fd < 0) {
        return 0;
    }
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, cap - 1);
    if (n <= 0) {
        return 0;
    }
    path[n] = 0;
    return strncmp(path, prefix, prefix_len) == 0;
}

static void side_log(const char *line, size_t len) {
    while (len > 0) {
        ssize_t n = syscall(SYS_write, log_fd, line, len);
        if (n <= 0) {
            return;
        }
        line += n;
        len -= (size_t)n;
    }
}

/* Counts an event and dies at the requested one, before performing it. */
static void event(void) {
    long n = atomic_fetch_add(&events, 1) + 1;
    if (die_at > 0 && n == die_at) {
        syscall(SYS_kill, getpid(), SIGKILL);
    }
}

static void note_write(int fd, off_t offset, size_t len) {
    char path[PATH_MAX];
    char line[PATH_MAX + 64];
    if (!tracked(fd, path, sizeof path)) {
        return;
    }
    if (offset < 0) { /* write/writev: the file position (or end, O_APPEND) */
        int flags = fcntl(fd, F_GETFL);
        struct stat st;
        if (flags >= 0 && (flags & O_APPEND) && fstat(fd, &st) == 0) {
            offset = st.st_size;
        } else {
            offset = lseek(fd, 0, SEEK_CUR);
        }
    }
    int n = snprintf(line, sizeof line, "W %lld %zu %s\n", (long long)offset, len, path);
    side_log(line, (size_t)n);
    event();
}

static void note_sync(int fd, int rc) {
    char path[PATH_MAX];
    char line[PATH_MAX + 8];
    if (rc != 0 || !tracked(fd, path, sizeof path)) {
        return;
    }
    int n = snprintf(line, sizeof line, "S %s\n", path);
    side_log(line, (size_t)n);
}

static void note_sync_event(int fd) {
    char path[PATH_MAX];
    if (tracked(fd, path, sizeof path)) {
        event();
    }
}

static size_t iov_len(const struct iovec *iov, int cnt) {
    size_t total = 0;
    for (int i = 0; i < cnt; i++) {
        total += iov[i].iov_len;
    }
    return total;
}

/* The next definition of `name` (libc's), looked up once. */
#define REAL(name) \
    static __typeof__(name) *real_##name; \
    if (!real_##name) real_##name = (__typeof__(name) *)dlsym(RTLD_NEXT, #name)

ssize_t write(int fd, const void *buf, size_t count) {
    REAL(write);
    note_write(fd, -1, count);
    return real_write(fd, buf, count);
}

ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset) {
    REAL(pwrite);
    note_write(fd, offset, count);
    return real_pwrite(fd, buf, count, offset);
}

ssize_t pwrite64(int fd, const void *buf, size_t count, off_t offset) {
    REAL(pwrite64);
    note_write(fd, offset, count);
    return real_pwrite64(fd, buf, count, offset);
}

ssize_t writev(int fd, const struct iovec *iov, int cnt) {
    REAL(writev);
    note_write(fd, -1, iov_len(iov, cnt));
    return real_writev(fd, iov, cnt);
}

ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t offset) {
    REAL(pwritev);
    note_write(fd, offset, iov_len(iov, cnt));
    return real_pwritev(fd, iov, cnt, offset);
}

ssize_t pwritev64(int fd, const struct iovec *iov, int cnt, off_t offset) {
    REAL(pwritev64);
    note_write(fd, offset, iov_len(iov, cnt));
    return real_pwritev64(fd, iov, cnt, offset);
}

ssize_t pwritev2(int fd, const struct iovec *iov, int cnt, off_t offset, int flags) {
    REAL(pwritev2);
    note_write(fd, offset, iov_len(iov, cnt));
    return real_pwritev2(fd, iov, cnt, offset, flags);
}

int fdatasync(int fd) {
    REAL(fdatasync);
    note_sync_event(fd);
    int rc = real_fdatasync(fd);
    note_sync(fd, rc);
    return rc;
}

int fsync(int fd) {
    REAL(fsync);
    note_sync_event(fd);
    int rc = real_fsync(fd);
    note_sync(fd, rc);
    return rc;
}

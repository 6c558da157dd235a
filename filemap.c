/* filemap.c: a whole file mapped read-only (filemap.h). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "filemap.h"

int map_file(const char *path, const char *what, size_t min_size, const uint8_t **buf, size_t *size,
             Error *err) {
    *buf = NULL;
    *size = 0;
    int fd = open(path, O_RDONLY);
    if (fd < 0) return fail(err, "cannot open %s '%s': %s", what, path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return fail(err, "%s '%s' is not a regular file", what, path);
    }
    *size = (size_t)st.st_size;
    if (*size < min_size || *size == 0) { /* mmap refuses an empty file */
        close(fd);
        return 1;
    }
    void *map = mmap(NULL, *size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd); /* the mapping stays valid */
    if (map == MAP_FAILED) {
        *size = 0;
        return fail(err, "cannot mmap '%s': %s", path, strerror(errno));
    }
    posix_madvise(map, *size, POSIX_MADV_WILLNEED); /* start reading ahead */
    *buf = map;
    return 0;
}

void unmap_file(const uint8_t *buf, size_t size) {
    if (buf) munmap((void *)buf, size);
}

/* A memory hog for the OOM tests, driven by lines on stdin.
 *
 * usage: oomhog NAME ADJ MIB CGROUP_PROCS|-
 * Joins the cgroup (before allocating: cgroup v1 does not move charges), sets oom_score_adj and comm,
 * touches MIB MiB of anonymous memory, prints "ready", then obeys:
 *   grow N   touch N more MiB, print "grown"
 *   pages N  touch N more pages, print "ok"
 *   churn N  N times: map, touch and unmap 16 MiB; print "churned"
 *   read PATH  read() the file to its end in 64 KiB calls (page cache charged here); print "read"
 * and exits 0 at end of input.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <fcntl.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "hogstart.h"

#define PAGE 4096UL
#define RESERVE (1UL << 30)

static char *base;
static unsigned long used;

static void touch_pages(unsigned long n)
{
	for (unsigned long i = 0; i < n && used + PAGE <= RESERVE; i++, used += PAGE)
		base[used] = 1;
}

int main(int argc, char **argv)
{
	char buf[64];
	hog_start(argc, argv, "oomhog");
	base = mmap(NULL, RESERVE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (base == MAP_FAILED) {
		perror("mmap");
		return 3;
	}
	touch_pages(strtoul(argv[3], NULL, 10) << 8);
	printf("ready\n");
	fflush(stdout);
	while (fgets(buf, sizeof(buf), stdin)) {
		unsigned long n = strtoul(buf + 6, NULL, 10);
		if (!strncmp(buf, "grow ", 5)) {
			touch_pages(strtoul(buf + 5, NULL, 10) << 8);
			printf("grown\n");
		} else if (!strncmp(buf, "pages ", 6)) {
			touch_pages(n);
			printf("ok\n");
		} else if (!strncmp(buf, "read ", 5)) {
			static char data[64 << 10];
			buf[strcspn(buf, "\n")] = 0;
			int fd = open(buf + 5, O_RDONLY);
			if (fd < 0)
				return 3;
			while (read(fd, data, sizeof(data)) > 0)
				;
			close(fd);
			printf("read\n");
		} else if (!strncmp(buf, "churn ", 6)) {
			for (unsigned long i = 0; i < n; i++) {
				char *p = mmap(NULL, 16UL << 20, PROT_READ | PROT_WRITE,
					       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
				if (p == MAP_FAILED)
					return 3;
				for (unsigned long off = 0; off < (16UL << 20); off += PAGE)
					p[off] = 1;
				munmap(p, 16UL << 20);
			}
			printf("churned\n");
		}
		fflush(stdout);
	}
	return 0;
}

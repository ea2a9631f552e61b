/* A task for the memcg OOM-wait tests (test_host_memcg_oom_wait.py), driven by lines on stdin.
 *
 * usage: memcgwait NAME ADJ MIB CGROUP_PROCS|-   (the arguments of oomhog; MIB is ignored)
 * Joins the cgroup first, sets oom_score_adj and comm, lays out its mappings in one 2 MiB block at
 * BASE and touches one page of two of them (page tables, anon_vma), prints "ready", then obeys:
 *   open PATH  open the file read-only; print "ok"
 *   mlock      mlock() the 16 untouched pages of region A; print "ret R" (0 or -errno)
 *   populate   mmap(MAP_FIXED|MAP_POPULATE) 16 read-write pages over the PROT_NONE region right
 *              after region P (they merge: no new VMA); print "ret R" (the address or -errno)
 *   madvise    madvise(MADV_POPULATE_WRITE) the 16 untouched pages of region A; print "ret R"
 *   pread      pread() 4 pages of the file into untouched pages of region B; print "ret R"
 *   pread1     pread() 1 page of the file into the page of region B touched at the start (the
 *              buffer needs no charge; an uncached file's page does); print "ret R"
 *   pread2     pread() 2 pages of the file from the same place (the buffer's second page is not
 *              mapped: only a page read first would be copied there); print "ret R"
 *   zero       read() 4 pages of /dev/zero (opened at the start) into untouched pages of region B;
 *              print "ret R"
 *   touch      store one byte to an untouched page of region B (a user fault); print "ok"
 * Everything a command needs is allocated before "ready" or by "open": at the memcg limit a reply
 * goes to the pipe page the first replies left behind (pipe->tmp_page), so it needs no charge.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "hogstart.h"

#define PAGE 4096UL
#define BASE ((char *)0x600000000000UL)
#define REGION (16 * PAGE)
#define A (BASE)
#define B (BASE + 4 * REGION)
#define P (BASE + 8 * REGION)
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

static void map_at(char *addr, int prot)
{
	if (mmap(addr, REGION, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0) != addr) {
		perror("mmap");
		exit(3);
	}
}

static long result(long ret)
{
	return ret < 0 ? -errno : ret;
}

int main(int argc, char **argv)
{
	char buf[256];
	int fd = -1, zero;

	hog_start(argc, argv, "memcgwait");
	map_at(A, PROT_READ | PROT_WRITE);
	map_at(B, PROT_READ | PROT_WRITE);
	map_at(P, PROT_READ | PROT_WRITE);
	map_at(P + REGION, PROT_NONE);
	B[REGION - PAGE] = 1;
	P[0] = 1;
	zero = open("/dev/zero", O_RDONLY);
	if (zero < 0)
		return 3;
	printf("ready\n");
	fflush(stdout);
	while (fgets(buf, sizeof(buf), stdin)) {
		buf[strcspn(buf, "\n")] = 0;
		if (!strncmp(buf, "open ", 5)) {
			fd = open(buf + 5, O_RDONLY);
			if (fd < 0)
				return 3;
			printf("ok\n");
		} else if (!strcmp(buf, "mlock")) {
			printf("ret %ld\n", result(mlock(A, REGION)));
		} else if (!strcmp(buf, "populate")) {
			void *got = mmap(P + REGION, REGION, PROT_READ | PROT_WRITE,
					 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_POPULATE, -1, 0);
			printf("ret %ld\n", got == MAP_FAILED ? -errno : (long)got);
		} else if (!strcmp(buf, "madvise")) {
			printf("ret %ld\n", result(madvise(A, REGION, MADV_POPULATE_WRITE)));
		} else if (!strcmp(buf, "zero")) {
			printf("ret %ld\n", result(read(zero, B, 4 * PAGE)));
		} else if (!strcmp(buf, "pread")) {
			printf("ret %ld\n", result(pread(fd, B, 4 * PAGE, 0)));
		} else if (!strcmp(buf, "pread1")) {
			printf("ret %ld\n", result(pread(fd, B + REGION - PAGE, PAGE, 0)));
		} else if (!strcmp(buf, "pread2")) {
			printf("ret %ld\n", result(pread(fd, B + REGION - PAGE, 2 * PAGE, 0)));
		} else if (!strcmp(buf, "touch")) {
			B[0] = 1;
			printf("ok\n");
		} else {
			return 2;
		}
		fflush(stdout);
	}
	return 0;
}

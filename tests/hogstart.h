/* The start every hog-like test program shares (tests/oomhog.c, tests/memcgwait.c), from its
 * arguments NAME ADJ MIB CGROUP_PROCS|-: join the cgroup first (cgroup v1 does not move charges, so
 * nothing may be charged before), then set oom_score_adj and comm. Exits 2 on a wrong argument count,
 * 3 when a file cannot be written.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
		perror(path);
		exit(3);
	}
}

static void hog_start(int argc, char **argv, const char *usage)
{
	char buf[64];

	if (argc != 5) {
		fprintf(stderr, "usage: %s NAME ADJ MIB CGROUP_PROCS|-\n", usage);
		exit(2);
	}
	if (strcmp(argv[4], "-") != 0) {
		snprintf(buf, sizeof(buf), "%d\n", getpid());
		write_file(argv[4], buf);
	}
	write_file("/proc/self/oom_score_adj", argv[2]);
	prctl(PR_SET_NAME, argv[1]);
}

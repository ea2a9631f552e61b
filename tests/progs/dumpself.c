/* dumpself: at its entry point, copy one /proc/self file (argv[1], default /proc/self/maps) to stdout.
 *
 * No libc, no relocations, raw syscalls only, so nothing but the kernel has touched the address space
 * when it reads the file. Built by tests/test_binfmt_elf.py in three ways:
 *   gcc -O2 -static -nostdlib -fno-pie -no-pie              (ET_EXEC)
 *   gcc -O2 -static-pie -nostdlib -fpie                     (ET_DYN without PT_INTERP)
 *   gcc -O2 -nostdlib -fpie -pie -Wl,-dynamic-linker,...    (ET_DYN with PT_INTERP, no DT_NEEDED)
 */
#include "rawsys.h"

/* Initialised data and a 64 KiB bss: a writable PT_LOAD whose p_memsz runs pages past p_filesz. */
static volatile long tag = 0x766d6c6162;
#ifndef BSS_SIZE
#define BSS_SIZE 65536
#endif
static char buf[BSS_SIZE];

__attribute__((noreturn, used)) void cmain(long *sp)
{
	long argc = sp[0];
	char **argv = (char **)(sp + 1);
	const char *path = argc > 1 ? argv[1] : "/proc/self/maps";
	long fd = sys3(SYS_open, (long)path, 0, 0);
	long status = fd < 0 ? 1 : 0;

	while (fd >= 0) {
		long n = sys3(SYS_read, fd, (long)buf, 65536), off = 0;
		if (n <= 0)
			break;
		while (off < n) {
			long w = sys3(SYS_write, 1, (long)buf + off, n - off);
			if (w <= 0) {
				status = 2;
				break;
			}
			off += w;
		}
	}
	sys3(SYS_exit, status + (tag != 0x766d6c6162), 0, 0);
	__builtin_unreachable();
}

__asm__(".globl _start\n_start:\n\tmov %rsp, %rdi\n\tand $-16, %rsp\n\tcall cmain\n");

// Traps (unreachable) in a named function.
#include <stdio.h>

__attribute__((noinline)) void crash_here(int x) {
	if (x > 0) {
		__builtin_trap();
	}
}

int main(int argc, char **argv) {
	printf("about to trap\n");
	fflush(stdout);
	crash_here(argc);
	return 0;
}

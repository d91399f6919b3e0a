/*
 * benchtool: the small, exact helpers bench/run.sh needs. One binary, six modes.
 *
 *   benchtool elf PATH
 *       Print "static" when the ELF file has no PT_INTERP program header
 *       (static and static-pie), "dynamic" when it has one.
 *
 *   benchtool children PPID
 *       Print the pids whose parent is PPID (a scan of /proc/[0-9]*\/stat),
 *       one a line. Used to find an init's host pid under `unshare --fork`.
 *
 *   benchtool storm N ROUNDS OUTFILE [REQ ACK]
 *       The app for the orphan storm; run it as the init's child, the init
 *       being PID 1 of a fresh pid namespace with its own /proc. Per round:
 *       forks a middle process that makes its own process group and forks N
 *       children, each blocking in pause(); the middle exits, so the N
 *       children are orphans re-parented to PID 1 (the init). The app then
 *       releases the barrier with one kill(-pgid, SIGKILL): the kernel makes
 *       all N exit at once, and each becomes a zombie that only PID 1 can
 *       reap. The clock runs from just before that kill until every child is
 *       gone (kill(pid, 0) fails with ESRCH: a zombie still answers it),
 *       checked every 100 us. Appends "ms zombies_left init_cpu_ms
 *       init_sleeps" to OUTFILE per round; after a 10 s timeout, zombies_left counts the 'Z' processes
 *       still there. init_cpu_ms is the CPU time PID 1 used meanwhile
 *       (/proc/1/schedstat, ns resolution): its own share of the work, less
 *       noisy than the wall time, which includes the kernel tearing down N
 *       processes on a shared machine. init_sleeps: how often PID 1 blocked
 *       meanwhile (voluntary context switches), i.e. its wake-ups.
 *       With the FIFOs REQ and ACK (a `benchtool stopper` on the host at the
 *       other end), each round then also times the zombie backlog: the app
 *       asks the host to SIGSTOP the init, makes N orphans die and waits until
 *       all are zombies, then SIGCONTs PID 1 and times until none is left;
 *       the line gets four more fields, the same four.
 *
 *   benchtool stopper PID REQ ACK
 *       Host side of that: for every byte read from REQ, SIGSTOP PID (forced:
 *       it comes from the parent pid namespace), wait until it is stopped,
 *       write a byte to ACK. Ends at EOF on REQ.
 *
 *   benchtool sigapp FIFO
 *       The app for signal latency: blocks SIGUSR1 and SIGTERM, opens FIFO for
 *       writing (the sender's open returns then: that is the ready hand-shake),
 *       then for every SIGUSR1 taken by sigwaitinfo() writes its
 *       CLOCK_MONOTONIC time (8 bytes, ns) to FIFO. SIGTERM ends it.
 *
 *   benchtool sigsend SAMPLES OUTFILE FIFO PID [FIFO PID ...]
 *       The sender: for each sample round, visits every init in a fresh random
 *       order, idles 0.5-1.5 ms (so the init is asleep, as in real life), reads
 *       CLOCK_MONOTONIC, kill(PID, SIGUSR1) the init, and waits (1 s at most)
 *       for the app's receive time on FIFO. Latency = receive - send. Writes
 *       one line per init: "median_us p99_us max_us samples lost", and to
 *       OUTFILE.raw one line per init with every sample in µs.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void sleep_ns(int64_t ns)
{
	struct timespec ts = { ns / 1000000000LL, ns % 1000000000LL };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static void die(const char *what)
{
	fprintf(stderr, "benchtool: %s: %s\n", what, strerror(errno));
	exit(2);
}

/* Parent pid and state from /proc/PID/stat (comm may hold spaces: parse after ')'). */
static int read_stat(const char *pid, char *state, long *ppid)
{
	char path[64], buf[512];
	snprintf(path, sizeof path, "/proc/%s/stat", pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	char *p = strrchr(buf, ')');
	if (!p || sscanf(p + 1, " %c %ld", state, ppid) != 2)
		return -1;
	return 0;
}

static int is_pid(const char *s)
{
	if (!*s)
		return 0;
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return 0;
	return 1;
}

static int cmd_children(long ppid)
{
	DIR *d = opendir("/proc");
	if (!d)
		die("opendir /proc");
	struct dirent *e;
	while ((e = readdir(d))) {
		char st;
		long pp;
		if (is_pid(e->d_name) && read_stat(e->d_name, &st, &pp) == 0 && pp == ppid)
			printf("%s\n", e->d_name);
	}
	closedir(d);
	return 0;
}

/* CPU time PID 1 has used so far, in ns (first field of /proc/1/schedstat). */
static int64_t init_cpu_ns(void)
{
	char buf[128];
	int fd = open("/proc/1/schedstat", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	return strtoll(buf, NULL, 10);
}

/* Times PID 1 went to sleep so far: voluntary_ctxt_switches in /proc/1/status. */
static long init_sleeps(void)
{
	FILE *f = fopen("/proc/1/status", "re");
	if (!f)
		return -1;
	char line[256];
	long v = -1;
	while (fgets(line, sizeof line, f))
		if (sscanf(line, "voluntary_ctxt_switches: %ld", &v) == 1)
			break;
	fclose(f);
	return v;
}

static int read_full(int fd, void *buf, size_t len)
{
	char *p = buf;
	while (len > 0) {
		ssize_t n = read(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Forks the middle and its n children; returns how many, their pids in kid, pgid in *pgid. */
static int make_orphans(int n, pid_t *kid, pid_t *pgid)
{
	int ready[2];
	if (pipe(ready) < 0)
		die("pipe");
	pid_t mid = fork();
	if (mid < 0)
		die("fork");
	if (mid == 0) {
		close(ready[0]);
		setpgid(0, 0);
		int made = 0;
		for (int i = 0; i < n; i++) {
			pid_t c = fork();
			if (c == 0) {
				close(ready[1]);
				for (;;)
					pause();
			}
			if (c < 0)
				break;
			kid[made++] = c;
		}
		if (write(ready[1], &made, sizeof made) != sizeof made)
			_exit(3);
		for (size_t off = 0, len = made * sizeof *kid; off < len;) {
			ssize_t w = write(ready[1], (char *)kid + off, len - off);
			if (w <= 0)
				_exit(3);
			off += (size_t)w;
		}
		_exit(0);
	}
	close(ready[1]);
	int made = 0;
	if (read_full(ready[0], &made, sizeof made) < 0 ||
	    read_full(ready[0], kid, made * sizeof *kid) < 0)
		die("read ready");
	close(ready[0]);
	/* Once the middle is reaped, its exit has re-parented every child to PID 1. */
	waitpid(mid, NULL, 0);
	if (made != n)
		fprintf(stderr, "benchtool storm: only %d of %d children forked\n", made, n);
	*pgid = mid;
	return made;
}

static char state_of(pid_t pid)
{
	char name[16], st;
	long pp;
	snprintf(name, sizeof name, "%d", pid);
	return read_stat(name, &st, &pp) == 0 ? st : 0;
}

/*
 * Waits until every child is gone: kill(pid, 0) succeeds on a zombie and fails
 * with ESRCH once it is reaped. Walks the list, napping 100 us on the first one
 * still there: a few syscalls per nap, so the watcher takes almost no CPU from
 * the init and the dying children. Returns the zombies left after 10 s.
 */
static int wait_all_reaped(pid_t *kid, int made, int64_t t0, int64_t *t1)
{
	int i = 0, left = 0;
	for (;;) {
		while (i < made && kill(kid[i], 0) < 0 && errno == ESRCH)
			i++;
		*t1 = now_ns();
		if (i == made)
			return 0;
		if (*t1 - t0 > 10000000000LL)
			break;
		sleep_ns(100000);
	}
	for (int j = i; j < made; j++)
		if (state_of(kid[j]) == 'Z')
			left++;
	return left;
}

static int cmd_storm(int n, int rounds, const char *outfile, const char *req, const char *ack)
{
	/* The init may hand us a mask or dispositions: make the children plain. */
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	signal(SIGCHLD, SIG_DFL);

	FILE *out = fopen(outfile, "a");
	if (!out)
		die("open outfile");
	if (getpid() == 1 || getppid() != 1)
		fprintf(stderr, "benchtool storm: warning: my parent is not PID 1 of this namespace\n");
	int reqfd = -1, ackfd = -1;
	if (req) {
		reqfd = open(req, O_WRONLY | O_CLOEXEC);
		ackfd = open(ack, O_RDONLY | O_CLOEXEC);
		if (reqfd < 0 || ackfd < 0)
			die("open control fifos");
	}
	pid_t *kid = calloc((size_t)n, sizeof *kid);

	for (int r = 0; r < rounds; r++) {
		pid_t pgid;
		int64_t t1;

		/* 1. The storm as it comes: release, and time until no zombie is left. */
		int made = make_orphans(n, kid, &pgid);
		sleep_ns(50000000); /* let the machine settle */
		long w0 = init_sleeps();
		int64_t c0 = init_cpu_ns();
		int64_t t0 = now_ns();
		if (kill(-pgid, SIGKILL) < 0)
			die("kill storm group");
		int left = wait_all_reaped(kid, made, t0, &t1);
		int64_t c1 = init_cpu_ns();
		long w1 = init_sleeps();
		fprintf(out, "%.3f %d %.3f %ld", (double)(t1 - t0) / 1e6, left,
			c0 < 0 || c1 < 0 ? -1.0 : (double)(c1 - c0) / 1e6, w1 - w0);

		/*
		 * 2. The backlog: the host stops the init (SIGSTOP from the parent
		 * namespace is forced), all children die and become zombies, then
		 * SIGCONT (which resumes even a namespace's PID 1) and time until
		 * every zombie is reaped: the init's own reaping work, alone.
		 */
		if (req && !left) {
			sleep_ns(50000000);
			made = make_orphans(n, kid, &pgid);
			sleep_ns(50000000);
			char c = 'S';
			if (write(reqfd, &c, 1) != 1 || read(ackfd, &c, 1) != 1)
				die("control fifo");
			if (kill(-pgid, SIGKILL) < 0)
				die("kill storm group");
			int64_t tz = now_ns();
			for (int i = 0; i < made && now_ns() - tz < 10000000000LL;)
				if (state_of(kid[i]) == 'Z')
					i++;
				else
					sleep_ns(1000000);
			sleep_ns(20000000);
			w0 = init_sleeps();
			c0 = init_cpu_ns();
			t0 = now_ns();
			kill(1, SIGCONT);
			left = wait_all_reaped(kid, made, t0, &t1);
			c1 = init_cpu_ns();
			w1 = init_sleeps();
			fprintf(out, " %.3f %d %.3f %ld", (double)(t1 - t0) / 1e6, left,
				c0 < 0 || c1 < 0 ? -1.0 : (double)(c1 - c0) / 1e6, w1 - w0);
		}
		fprintf(out, "\n");
		fflush(out);
		if (left)
			break; /* an init that does not reap: one round says it all */
		sleep_ns(100000000);
	}
	fclose(out);
	return 0;
}

/* Host side of the storm's backlog round: on each request, SIGSTOP PID and acknowledge once stopped. */
static int cmd_stopper(pid_t pid, const char *req, const char *ack)
{
	int reqfd = open(req, O_RDONLY | O_CLOEXEC);
	int ackfd = open(ack, O_WRONLY | O_CLOEXEC);
	if (reqfd < 0 || ackfd < 0)
		die("open control fifos");
	char c;
	while (read(reqfd, &c, 1) == 1) {
		if (kill(pid, SIGSTOP) < 0)
			die("SIGSTOP the init");
		for (int i = 0; i < 5000 && state_of(pid) != 'T' && state_of(pid) != 't'; i++)
			sleep_ns(200000);
		if (write(ackfd, &c, 1) != 1)
			break;
	}
	return 0;
}

static int cmd_sigapp(const char *fifo)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
		die("sigprocmask");
	int fd = open(fifo, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		die("open fifo");
	for (;;) {
		siginfo_t si;
		int sig = sigwaitinfo(&set, &si);
		int64_t t = now_ns();
		if (sig == SIGUSR1) {
			if (write(fd, &t, sizeof t) != sizeof t)
				return 1;
		} else if (sig > 0) {
			return 0;
		}
	}
}

static int cmp64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

static int cmd_sigsend(int samples, const char *outfile, int ninit, char **argv)
{
	int *fd = calloc(ninit, sizeof *fd);
	pid_t *pid = calloc(ninit, sizeof *pid);
	int64_t **lat = calloc(ninit, sizeof *lat);
	int *got = calloc(ninit, sizeof *got), *lost = calloc(ninit, sizeof *lost);
	int *order = calloc(ninit, sizeof *order);
	alarm(60); /* an app that never opens its FIFO must not hang the bench */
	for (int i = 0; i < ninit; i++) {
		fd[i] = open(argv[2 * i], O_RDONLY | O_CLOEXEC);
		if (fd[i] < 0)
			die("open fifo");
		pid[i] = atoi(argv[2 * i + 1]);
		lat[i] = calloc(samples, sizeof **lat);
	}
	alarm(0);
	srand(12345);
	for (int s = 0; s < samples; s++) {
		for (int i = 0; i < ninit; i++)
			order[i] = i;
		for (int i = ninit - 1; i > 0; i--) {
			int j = rand() % (i + 1), t = order[i];
			order[i] = order[j];
			order[j] = t;
		}
		for (int k = 0; k < ninit; k++) {
			int i = order[k];
			sleep_ns(500000 + rand() % 1000000);
			int64_t t0 = now_ns();
			if (kill(pid[i], SIGUSR1) < 0) {
				lost[i]++;
				continue;
			}
			struct pollfd p = { fd[i], POLLIN, 0 };
			int64_t t1;
			if (poll(&p, 1, 1000) == 1 && read(fd[i], &t1, sizeof t1) == sizeof t1)
				lat[i][got[i]++] = t1 - t0;
			else
				lost[i]++;
		}
	}
	FILE *out = fopen(outfile, "w");
	if (!out)
		die("open outfile");
	char rawname[4096];
	snprintf(rawname, sizeof rawname, "%s.raw", outfile);
	FILE *raw = fopen(rawname, "w");
	if (!raw)
		die("open outfile.raw");
	for (int i = 0; i < ninit; i++) {
		for (int k = 0; k < got[i]; k++)
			fprintf(raw, "%s%.1f", k ? " " : "", lat[i][k] / 1e3);
		fprintf(raw, "\n");
	}
	fclose(raw);
	for (int i = 0; i < ninit; i++) {
		int m = got[i];
		if (m == 0) {
			fprintf(out, "nan nan nan 0 %d\n", lost[i]);
			continue;
		}
		qsort(lat[i], m, sizeof **lat, cmp64);
		double med = m % 2 ? lat[i][m / 2] : (lat[i][m / 2 - 1] + lat[i][m / 2]) / 2.0;
		int k99 = (int)((99LL * m + 99) / 100) - 1; /* nearest rank */
		fprintf(out, "%.1f %.1f %.1f %d %d\n", med / 1e3, lat[i][k99] / 1e3,
			lat[i][m - 1] / 1e3, m, lost[i]);
	}
	fclose(out);
	return 0;
}

/* "static" when the ELF file has no PT_INTERP (static and static-pie alike), else "dynamic". */
static int cmd_elf(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		die(path);
	Elf64_Ehdr eh;
	if (fread(&eh, sizeof eh, 1, f) != 1 || memcmp(eh.e_ident, ELFMAG, SELFMAG) ||
	    eh.e_ident[EI_CLASS] != ELFCLASS64) {
		printf("unknown\n");
		return 0;
	}
	const char *kind = "static";
	for (int i = 0; i < eh.e_phnum; i++) {
		Elf64_Phdr ph;
		if (fseek(f, (long)(eh.e_phoff + (Elf64_Off)i * eh.e_phentsize), SEEK_SET) ||
		    fread(&ph, sizeof ph, 1, f) != 1) {
			kind = "unknown";
			break;
		}
		if (ph.p_type == PT_INTERP)
			kind = "dynamic";
	}
	fclose(f);
	printf("%s\n", kind);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "elf"))
		return cmd_elf(argv[2]);
	if (argc >= 3 && !strcmp(argv[1], "children"))
		return cmd_children(atol(argv[2]));
	if ((argc == 5 || argc == 7) && !strcmp(argv[1], "storm"))
		return cmd_storm(atoi(argv[2]), atoi(argv[3]), argv[4], argc == 7 ? argv[5] : NULL,
				 argc == 7 ? argv[6] : NULL);
	if (argc == 5 && !strcmp(argv[1], "stopper"))
		return cmd_stopper(atoi(argv[2]), argv[3], argv[4]);
	if (argc == 3 && !strcmp(argv[1], "sigapp"))
		return cmd_sigapp(argv[2]);
	if (argc >= 6 && argc % 2 == 0 && !strcmp(argv[1], "sigsend"))
		return cmd_sigsend(atoi(argv[2]), argv[3], (argc - 4) / 2, argv + 4);
	fprintf(stderr, "usage: benchtool elf PATH | children PPID | storm N ROUNDS OUTFILE [REQ ACK] |"
			" stopper PID REQ ACK | sigapp FIFO |"
			" sigsend SAMPLES OUTFILE FIFO PID [FIFO PID ...]\n");
	return 2;
}

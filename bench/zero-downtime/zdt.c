// The two processes `make zero-downtime` needs besides HAProxy and the inits:
//
//   zdt app PORT NAME MODE DRAIN_FILE WORK_MS [CHECK_LOG]
//       A small threaded HTTP/1.1 server on 127.0.0.1:PORT, one thread per
//       connection, one request per connection (`Connection: close`).
//         GET /healthz   MODE=cooperative: 503 while DRAIN_FILE exists, else 200
//                        MODE=unmodified:  200 as long as it runs
//         GET /...       WORK_MS of "work" (a sleep), then 200 with NAME as the body
//       With CHECK_LOG, each /healthz appends its arrival (CLOCK_MONOTONIC ns) there,
//       so that the harness can tell where in the check cycle its SIGTERM landed.
//       On SIGTERM or SIGINT it does what a typical app does: closes its
//       listening socket at once (new connections are refused), finishes the
//       requests it has accepted, and exits 0. Bounded: after 10 s of waiting
//       for them it exits 1.
//       MODE=dies: no handler at all (as /healthz, unmodified): SIGTERM kills
//       it at once, with every request in flight (the adaptive drain's row).
//
//   zdt load PORT CONNS RATE MAX_SECS OUT
//       A closed-loop client: CONNS threads, each with a keep-alive connection
//       to 127.0.0.1:PORT, each sending GET /work, waiting for the answer, and
//       pacing itself to RATE/CONNS requests per second. Every request is
//       recorded: start and end (CLOCK_MONOTONIC ns), the HTTP status or a
//       negative code for a connection error (-1 connect, -2 send, -3 reset or
//       closed before the answer, -4 timeout, -5 unparsable answer), and the
//       body of a 2xx answer (the name of the instance that served it, up to
//       15 bytes; "-" otherwise). It stops on
//       SIGTERM/SIGINT (finishing the requests in flight) or after MAX_SECS,
//       and writes one line per request to OUT: "start end status who".
//       Meanwhile it prints "now completed" on stdout every 100 ms.
//
// Only loopback addresses: both bind or connect to 127.0.0.1 and nothing else.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void sleep_ns(int64_t ns) {
  if (ns <= 0) return;
  struct timespec ts = {ns / 1000000000, ns % 1000000000};
  while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
  }
}

static void die(const char *what) {
  perror(what);
  exit(2);
}

/* SIGTERM and SIGINT go to `handler` (no flags); SIGPIPE is ignored, so a
   write to a closed connection says EPIPE instead. */
static void on_stop_signals(void (*handler)(int)) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = handler;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
}

static struct sockaddr_in loopback(int port) {
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

static void set_timeouts(int fd, int secs) {
  struct timeval tv = {secs, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

static int write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

// ------------------------------------------------------------------ app

static const char *app_name, *app_mode, *app_drain_file;
static int app_work_ms;
static int app_check_log = -1;
static pthread_mutex_t app_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t app_cv = PTHREAD_COND_INITIALIZER;
static int app_active;  // accepted connections not yet answered and closed
static int app_pipe[2]; // the signal handler writes here

static void app_on_signal(int sig) {
  int saved = errno;
  char c = (char)sig;
  (void)!write(app_pipe[1], &c, 1);
  errno = saved;
}

static void *app_conn(void *arg) {
  int fd = (int)(intptr_t)arg;
  char buf[4096];
  size_t len = 0;
  set_timeouts(fd, 5);
  while (len < sizeof buf - 1) {
    ssize_t r = recv(fd, buf + len, sizeof buf - 1 - len, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    len += (size_t)r;
    buf[len] = 0;
    if (strstr(buf, "\r\n\r\n")) break;
  }
  buf[len] = 0;
  if (strstr(buf, "\r\n\r\n")) {
    int code = 200;
    const char *body = app_name;
    if (strncmp(buf, "GET /healthz ", 13) == 0 || strncmp(buf, "HEAD /healthz ", 14) == 0) {
      body = "ok";
      if (app_check_log >= 0) {
        char line[32];
        int n = snprintf(line, sizeof line, "%lld\n", (long long)now_ns());
        if (n > 0) (void)!write(app_check_log, line, (size_t)n);
      }
      if (strcmp(app_mode, "cooperative") == 0 && access(app_drain_file, F_OK) == 0) {
        code = 503;
        body = "draining";
      }
    } else {
      sleep_ns((int64_t)app_work_ms * 1000000);
    }
    char out[512];
    int n = snprintf(out, sizeof out,
                     "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                     "X-Served-By: %s\r\nConnection: close\r\n\r\n%s",
                     code, code == 200 ? "OK" : "Service Unavailable", strlen(body), app_name, body);
    if (n > 0 && (size_t)n < sizeof out) write_all(fd, out, (size_t)n);
  }
  close(fd);
  pthread_mutex_lock(&app_mu);
  app_active--;
  pthread_cond_signal(&app_cv);
  pthread_mutex_unlock(&app_mu);
  return NULL;
}

static int app_main(int argc, char **argv) {
  if (argc != 7 && argc != 8) {
    fprintf(stderr, "usage: zdt app PORT NAME cooperative|unmodified|dies DRAIN_FILE WORK_MS [CHECK_LOG]\n");
    return 2;
  }
  int port = atoi(argv[2]);
  app_name = argv[3];
  app_mode = argv[4];
  app_drain_file = argv[5];
  app_work_ms = atoi(argv[6]);
  if (argc == 8) {
    app_check_log = open(argv[7], O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (app_check_log < 0) die(argv[7]);
  }
  if (strcmp(app_mode, "cooperative") != 0 && strcmp(app_mode, "unmodified") != 0 &&
      strcmp(app_mode, "dies") != 0) {
    fprintf(stderr, "zdt app: unknown mode %s\n", app_mode);
    return 2;
  }
  if (pipe2(app_pipe, O_CLOEXEC | O_NONBLOCK) < 0) die("pipe2");
  if (strcmp(app_mode, "dies") == 0) {
    /* No handler: SIGTERM kills it at once, with every request in flight. */
    signal(SIGPIPE, SIG_IGN);
  } else {
    on_stop_signals(app_on_signal);
  }

  int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (ls < 0) die("socket");
  int one = 1;
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = loopback(port);
  if (bind(ls, (struct sockaddr *)&a, sizeof a) < 0) die("bind");
  if (listen(ls, 128) < 0) die("listen");
  fprintf(stderr, "zdt app %s: listening on 127.0.0.1:%d (%s)\n", app_name, port, app_mode);

  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&attr, 64 * 1024);
  for (;;) {
    struct pollfd p[2] = {{ls, POLLIN, 0}, {app_pipe[0], POLLIN, 0}};
    if (poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      die("poll");
    }
    if (p[1].revents) break;
    if (!(p[0].revents & POLLIN)) continue;
    int fd = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0) continue;
    pthread_mutex_lock(&app_mu);
    app_active++;
    pthread_mutex_unlock(&app_mu);
    pthread_t t;
    if (pthread_create(&t, &attr, app_conn, (void *)(intptr_t)fd) != 0) {
      close(fd);
      pthread_mutex_lock(&app_mu);
      app_active--;
      pthread_mutex_unlock(&app_mu);
    }
  }
  // Stop accepting: what is still in the backlog is reset by the kernel.
  close(ls);
  int64_t deadline = now_ns() + 10LL * 1000000000;
  pthread_mutex_lock(&app_mu);
  int left = app_active;
  fprintf(stderr, "zdt app %s: signal received: stopped accepting, finishing %d request(s)\n", app_name, left);
  while (app_active > 0 && now_ns() < deadline) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 50000000;
    if (ts.tv_nsec >= 1000000000) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000;
    }
    pthread_cond_timedwait(&app_cv, &app_mu, &ts);
  }
  left = app_active;
  pthread_mutex_unlock(&app_mu);
  fprintf(stderr, "zdt app %s: exiting (%d request(s) unfinished)\n", app_name, left);
  return left == 0 ? 0 : 1;
}

// ------------------------------------------------------------------ load

struct rec {
  int64_t start, end;
  int status;
  char who[16];
};

struct worker {
  pthread_t t;
  int port;
  int64_t period_ns, offset_ns, stop_at;
  struct rec *recs;
  size_t n, cap;
};

static atomic_int load_stop, load_workers_done;
static atomic_long load_completed;

static void load_on_signal(int sig) {
  (void)sig;
  atomic_store(&load_stop, 1);
}

// Reads one HTTP response from fd. Returns the status (> 0) or a negative
// code; *keep says whether the connection can carry another request.
static int read_response(int fd, char who[16], int *keep) {
  char buf[8192];
  size_t len = 0;
  char *hend = NULL;
  char body[16];
  size_t blen = 0;
  *keep = 0;
  strcpy(who, "-");
  while (!hend) {
    if (len >= sizeof buf - 1) return -5;
    ssize_t r = recv(fd, buf + len, sizeof buf - 1 - len, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return (errno == EAGAIN || errno == EWOULDBLOCK) ? -4 : -3;
    if (r == 0) return -3;
    len += (size_t)r;
    buf[len] = 0;
    hend = strstr(buf, "\r\n\r\n");
  }
  int status;
  if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1) return -5;
  long clen = -1;
  int close_it = 0;
  for (char *line = strstr(buf, "\r\n"); line && line < hend; line = strstr(line + 2, "\r\n")) {
    char *h = line + 2;
    if (strncasecmp(h, "content-length:", 15) == 0) clen = strtol(h + 15, NULL, 10);
    if (strncasecmp(h, "connection:", 11) == 0) {
      char *v = h + 11;
      while (*v == ' ') v++;
      if (strncasecmp(v, "close", 5) == 0) close_it = 1;
    }
  }
  size_t have = len - (size_t)(hend + 4 - buf);
  for (size_t i = 0; i < have && blen < sizeof body - 1; i++) body[blen++] = hend[4 + i];
  if (clen < 0) { // no length: the body ends with the connection
    for (;;) {
      ssize_t r = recv(fd, buf, sizeof buf, 0);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) break;
      for (ssize_t i = 0; i < r && blen < sizeof body - 1; i++) body[blen++] = buf[i];
    }
    close_it = 1;
  } else {
    while ((long)have < clen) {
      ssize_t r = recv(fd, buf, sizeof buf, 0);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) return (errno == EAGAIN || errno == EWOULDBLOCK) ? -4 : -3;
      if (r == 0) return -3;
      for (ssize_t i = 0; i < r && blen < sizeof body - 1; i++) body[blen++] = buf[i];
      have += (size_t)r;
    }
  }
  body[blen] = 0;
  body[strcspn(body, " \t\r\n")] = 0;
  if (status >= 200 && status < 300 && body[0]) strcpy(who, body);
  *keep = !close_it;
  return status;
}

static void *load_worker(void *arg) {
  struct worker *w = arg;
  static const char req[] = "GET /work HTTP/1.1\r\nHost: zdt\r\nUser-Agent: zdt-load\r\n\r\n";
  int fd = -1;
  int64_t next = now_ns() + w->offset_ns;
  while (!atomic_load(&load_stop) && w->n < w->cap) {
    int64_t t = now_ns();
    if (t >= w->stop_at) break;
    if (next > t) {
      sleep_ns(next - t < 50000000 ? next - t : 50000000); // wake at least every 50 ms to see a stop
      continue;
    }
    next += w->period_ns;
    if (next < t) next = t; // behind: closed loop, do not burst
    struct rec *r = &w->recs[w->n++];
    r->start = now_ns();
    strcpy(r->who, "-");
    if (fd < 0) {
      fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (fd < 0) die("socket");
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      set_timeouts(fd, 5);
      struct sockaddr_in a = loopback(w->port);
      if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        r->status = -1;
        r->end = now_ns();
        atomic_fetch_add(&load_completed, 1);
        close(fd);
        fd = -1;
        continue;
      }
    }
    int keep = 0;
    if (write_all(fd, req, sizeof req - 1) < 0) {
      r->status = -2;
    } else {
      r->status = read_response(fd, r->who, &keep);
    }
    r->end = now_ns();
    atomic_fetch_add(&load_completed, 1);
    if (!keep) {
      close(fd);
      fd = -1;
    }
  }
  if (fd >= 0) close(fd);
  atomic_fetch_add(&load_workers_done, 1);
  return NULL;
}

static int load_main(int argc, char **argv) {
  if (argc != 7) {
    fprintf(stderr, "usage: zdt load PORT CONNS RATE MAX_SECS OUT\n");
    return 2;
  }
  int port = atoi(argv[2]), conns = atoi(argv[3]), rate = atoi(argv[4]), max_secs = atoi(argv[5]);
  const char *out = argv[6];
  if (conns < 1 || conns > 64 || rate < 1 || rate > 5000 || max_secs < 1 || max_secs > 600) {
    fprintf(stderr, "zdt load: CONNS 1..64, RATE 1..5000, MAX_SECS 1..600\n");
    return 2;
  }
  on_stop_signals(load_on_signal);
  int64_t period = (int64_t)1000000000 * conns / rate;
  int64_t stop_at = now_ns() + (int64_t)max_secs * 1000000000;
  struct worker *ws = calloc((size_t)conns, sizeof *ws);
  if (!ws) die("calloc");
  for (int i = 0; i < conns; i++) {
    ws[i].port = port;
    ws[i].period_ns = period;
    ws[i].offset_ns = period * i / conns; // spread the connections over one period
    ws[i].stop_at = stop_at;
    ws[i].cap = (size_t)(max_secs + 1) * (size_t)rate / (size_t)conns * 2 + 16;
    ws[i].recs = calloc(ws[i].cap, sizeof(struct rec));
    if (!ws[i].recs) die("calloc");
    if (pthread_create(&ws[i].t, NULL, load_worker, &ws[i]) != 0) die("pthread_create");
  }
  // Progress for the harness, every 100 ms: "now_ns completed_requests".
  while (atomic_load(&load_workers_done) < conns) {
    sleep_ns(100000000);
    printf("%lld %ld\n", (long long)now_ns(), atomic_load(&load_completed));
    fflush(stdout);
  }
  for (int i = 0; i < conns; i++) pthread_join(ws[i].t, NULL);
  FILE *f = fopen(out, "w");
  if (!f) die(out);
  for (int i = 0; i < conns; i++)
    for (size_t j = 0; j < ws[i].n; j++) {
      struct rec *r = &ws[i].recs[j];
      fprintf(f, "%lld %lld %d %s\n", (long long)r->start, (long long)r->end, r->status, r->who);
    }
  if (fclose(f) != 0) die(out);
  return 0;
}

int main(int argc, char **argv) {
  if (argc >= 2 && strcmp(argv[1], "app") == 0) return app_main(argc, argv);
  if (argc >= 2 && strcmp(argv[1], "load") == 0) return load_main(argc, argv);
  fprintf(stderr, "usage: zdt app ... | zdt load ...\n");
  return 2;
}

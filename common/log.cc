#include "common/log.h"

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <ctime>

#include "absl/strings/str_format.h"

namespace rangefs {
namespace {

std::atomic<int> g_min_level{static_cast<int>(LogLevel::kInfo)};
char g_program[64] = "rangefs";

const char* LevelName(LogLevel l) {
  switch (l) {
    case LogLevel::kDebug:
      return "D";
    case LogLevel::kInfo:
      return "I";
    case LogLevel::kWarning:
      return "W";
    case LogLevel::kError:
      return "E";
  }
  return "?";
}

}  // namespace

void InitLogging(const std::string& program) {
  snprintf(g_program, sizeof(g_program), "%s", program.c_str());
  if (const char* env = getenv("RANGEFS_LOG_LEVEL")) {
    if (!strcmp(env, "debug")) g_min_level = 0;
    if (!strcmp(env, "info")) g_min_level = 1;
    if (!strcmp(env, "warning")) g_min_level = 2;
    if (!strcmp(env, "error")) g_min_level = 3;
  }
}

bool LogEnabled(LogLevel level) {
  return static_cast<int>(level) >= g_min_level.load(std::memory_order_relaxed);
}

LogLine::LogLine(LogLevel level, const char* file, int line) : level_(level) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  const char* base = strrchr(file, '/');
  out_ << absl::StrFormat("%02d:%02d:%02d.%06ld %s %s[%d] %s:%d] ", tm.tm_hour,
                          tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000,
                          LevelName(level_), g_program, getpid(),
                          base ? base + 1 : file, line);
}

LogLine::~LogLine() {
  out_ << '\n';
  std::string s = out_.str();
  ssize_t n = write(STDERR_FILENO, s.data(), s.size());
  (void)n;
}

}  // namespace rangefs

// Minimal logging to stderr: RANGEFS_LOG(INFO) << "text";
// One line per statement, prefixed with a wall-clock time, the level and the
// program name, written with a single write(2) so lines from threads and
// processes do not interleave.
#ifndef RANGEFS_COMMON_LOG_H_
#define RANGEFS_COMMON_LOG_H_

#include <sstream>
#include <string>

namespace rangefs {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

// Sets the program name shown in every line and the minimum level (also
// from RANGEFS_LOG_LEVEL=debug|info|warning|error).
void InitLogging(const std::string& program);
bool LogEnabled(LogLevel level);

class LogLine {
 public:
  LogLine(LogLevel level, const char* file, int line);
  ~LogLine();
  LogLine(const LogLine&) = delete;
  LogLine& operator=(const LogLine&) = delete;
  std::ostream& stream() { return out_; }

 private:
  LogLevel level_;
  std::ostringstream out_;
};

}  // namespace rangefs

#define RANGEFS_LOG_DEBUG ::rangefs::LogLevel::kDebug
#define RANGEFS_LOG_INFO ::rangefs::LogLevel::kInfo
#define RANGEFS_LOG_WARNING ::rangefs::LogLevel::kWarning
#define RANGEFS_LOG_ERROR ::rangefs::LogLevel::kError
#define RANGEFS_LOG(level)                           \
  if (!::rangefs::LogEnabled(RANGEFS_LOG_##level)) { \
  } else                                             \
    ::rangefs::LogLine(RANGEFS_LOG_##level, __FILE__, __LINE__).stream()

#endif  // RANGEFS_COMMON_LOG_H_

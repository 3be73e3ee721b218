// A directory under $TMPDIR (or /tmp) removed with its contents on
// destruction, for tests.
#ifndef RANGEFS_TESTS_UTIL_TEMP_DIR_H_
#define RANGEFS_TESTS_UTIL_TEMP_DIR_H_

#include <cstdlib>
#include <filesystem>
#include <string>

namespace rangefs::testing {

class TempDir {
 public:
  TempDir() {
    const char* base = getenv("TMPDIR");
    std::string tmpl =
        std::string(base ? base : "/tmp") + "/rangefs-test-XXXXXX";
    char* p = mkdtemp(tmpl.data());
    path_ = p ? p : "";
  }
  // RANGEFS_KEEP_TEST_DIRS=1 keeps them (logs of a failed run).
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty() && getenv("RANGEFS_KEEP_TEST_DIRS") == nullptr) {
      std::filesystem::remove_all(path_, ec);
    }
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

}  // namespace rangefs::testing

#endif  // RANGEFS_TESTS_UTIL_TEMP_DIR_H_

// Progress for long loops. On a terminal: one line redrawn in place (\r) at most ~10 times a
// second,
//   step 120/500 [#####.....] 24% loss 2.731 lr 1.9e-05 1.8k tok/s mem 1.2 GiB ETA 3m12s
// fitted to the terminal width. Elsewhere (a log file, a pipe, CI): a plain line every N steps
// or every ~10 s, never \r. The caller supplies the fields (so memory can be left out on CPU);
// the bar adds the rate of work units and the ETA, both from smoothed rates.
// QAT_NO_PROGRESS=1 in the environment (or enabled = false) turns the bar off.
// The stream, the clock and the TTY flag can be injected, which is how the tests drive it.
#pragma once

#include <cstdint>
#include <functional>
#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

namespace qat::train {

// One "name value" pair of the progress line; an empty name prints just the value.
struct ProgressField {
  std::string name;
  std::string value;
};

struct ProgressOptions {
  int64_t total = 0;           // last step; 0 = unknown (no bar, percentage or ETA)
  int64_t initial_step = 0;    // where a resumed run starts, so the rate ignores earlier steps
  std::string label = "step";  // first word of the line
  std::string unit = "tok/s";  // unit of the rate of `work` passed to update(); "" = no rate
  bool enabled = true;         // false, or QAT_NO_PROGRESS=1: update() and finish() print nothing
  double redraw_interval_s = 0.1;  // TTY: at most this often (~10 Hz)
  int64_t log_every_steps = 0;     // not a TTY: a line every N steps (0: by time only)
  double log_interval_s = 10.0;    // not a TTY: and at least every this many seconds
  int width = 0;                   // TTY line width; 0 = the terminal's (fallback 100)
  double smoothing = 0.3;          // weight of the newest window in the rate averages
  std::ostream* out = nullptr;     // default std::cerr
  std::optional<bool> tty;         // default isatty(stderr) when out is std::cerr, else false
  std::function<double()> clock;   // seconds, monotonic; default std::chrono::steady_clock
};

class ProgressBar {
 public:
  explicit ProgressBar(ProgressOptions options = {});
  ~ProgressBar();  // finish()
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  // Reports that `step` is done, with `work` units (tokens) processed since the previous update.
  // Prints if the redraw / log interval has passed or step == total.
  void update(int64_t step, const std::vector<ProgressField>& fields = {}, double work = 0);

  // Prints a full line (an eval result, a checkpoint notice) above the bar; works when disabled.
  void print(const std::string& line);

  // Prints the final state (if not shown yet) and ends the line. Idempotent.
  void finish();

  bool enabled() const { return enabled_; }
  bool is_tty() const { return tty_; }
  // Smoothed seconds per step (NaN before the first measurement); ETA = this * steps left.
  double seconds_per_step() const { return sec_per_step_; }

  // The line for the current state (no \r or \n): the TTY layout when `width` > 0 (a bar sized to
  // fit, then cut to width - 1 characters), the log layout (no bar) when `width` == 0.
  std::string render(int width) const;

 private:
  double now() const;
  void measure(double t);
  void draw(bool final_line);
  int line_width() const;

  ProgressOptions opt_;
  std::ostream* out_;
  bool enabled_;
  bool tty_;
  bool finished_ = false;
  bool shown_current_ = true;     // the latest update has been printed
  std::size_t drawn_length_ = 0;  // TTY: length of the line on screen (to blank it when redrawn)
  int64_t step_ = 0;
  std::vector<ProgressField> fields_;
  double last_print_t_ = 0;
  int64_t last_print_step_ = 0;
  // Rate measurement: a window from (window_t_, window_step_) accumulates until it is at least
  // redraw_interval_s long, then folds into the exponential averages.
  double window_t_ = 0;
  int64_t window_step_ = 0;
  double window_work_ = 0;
  double sec_per_step_;
  double work_per_sec_;
};

// True when QAT_NO_PROGRESS is set to anything but "" or "0".
bool progress_disabled_by_env();

}  // namespace qat::train

#include "trainers/metrics/progress_bar.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <iostream>
#include <stdexcept>

#include "trainers/metrics/format.h"

namespace qat::train {

namespace {

constexpr int kFallbackWidth = 100;  // when the terminal does not report its size
constexpr int kMaxBarCells = 30;     // wider bars carry no more information
constexpr int kMinBarCells = 10;     // narrower than this, the percentage alone says more

double steady_seconds() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

}  // namespace

bool progress_disabled_by_env() {
  const char* v = std::getenv("QAT_NO_PROGRESS");
  return v != nullptr && v[0] != '\0' && std::string(v) != "0";
}

ProgressBar::ProgressBar(ProgressOptions options)
    : opt_(std::move(options)),
      out_(opt_.out ? opt_.out : &std::cerr),
      enabled_(opt_.enabled && !progress_disabled_by_env()),
      tty_(opt_.tty ? *opt_.tty : (out_ == &std::cerr && ::isatty(STDERR_FILENO) == 1)),
      sec_per_step_(std::nan("")),
      work_per_sec_(std::nan("")) {
  if (opt_.total < 0) {
    throw std::invalid_argument("ProgressBar: total must be >= 0 (0 = unknown), got " +
                                std::to_string(opt_.total));
  }
  if (!(opt_.smoothing > 0 && opt_.smoothing <= 1)) {
    throw std::invalid_argument("ProgressBar: smoothing must be in (0, 1], got " +
                                std::to_string(opt_.smoothing));
  }
  if (opt_.log_every_steps < 0 || opt_.width < 0) {
    throw std::invalid_argument("ProgressBar: log_every_steps and width must be >= 0");
  }
  step_ = last_print_step_ = window_step_ = opt_.initial_step;
  last_print_t_ = window_t_ = now();
}

ProgressBar::~ProgressBar() {
  try {
    finish();
  } catch (...) {
    // A destructor must not throw; a failed final redraw loses nothing that matters.
  }
}

double ProgressBar::now() const {
  return opt_.clock ? opt_.clock() : steady_seconds();
}

// Folds the window since the last measurement into the averages once it is long enough that
// per-step jitter (a slow data batch, an eval) does not dominate.
void ProgressBar::measure(double t) {
  const double dt = t - window_t_;
  const int64_t dsteps = step_ - window_step_;
  if (dsteps <= 0 || dt < std::max(opt_.redraw_interval_s, 1e-9)) return;
  const double a = opt_.smoothing;
  const double sps = dt / static_cast<double>(dsteps);
  const double wps = window_work_ / dt;
  sec_per_step_ = std::isnan(sec_per_step_) ? sps : a * sps + (1 - a) * sec_per_step_;
  work_per_sec_ = std::isnan(work_per_sec_) ? wps : a * wps + (1 - a) * work_per_sec_;
  window_t_ = t;
  window_step_ = step_;
  window_work_ = 0;
}

void ProgressBar::update(int64_t step, const std::vector<ProgressField>& fields, double work) {
  if (!enabled_ || finished_) return;
  step_ = step;
  fields_ = fields;
  if (std::isfinite(work)) window_work_ += work;
  const double t = now();
  measure(t);
  shown_current_ = false;
  const bool last = opt_.total > 0 && step >= opt_.total;
  bool due;
  if (tty_) {
    due = t - last_print_t_ >= opt_.redraw_interval_s;
  } else {
    due =
        t - last_print_t_ >= opt_.log_interval_s ||
        (opt_.log_every_steps > 0 && step % opt_.log_every_steps == 0 && step != last_print_step_);
  }
  if (due || last) {
    draw(false);
    last_print_t_ = t;
    last_print_step_ = step;
  }
}

int ProgressBar::line_width() const {
  if (opt_.width > 0) return opt_.width;
  winsize ws{};
  if (out_ == &std::cerr && ::ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) {
    return ws.ws_col;
  }
  return kFallbackWidth;
}

std::string ProgressBar::render(int width) const {
  std::string head = opt_.label + " " + std::to_string(step_);
  if (opt_.total > 0) head += "/" + std::to_string(opt_.total);
  const double frac =
      opt_.total > 0 ? std::clamp(static_cast<double>(step_) / opt_.total, 0.0, 1.0) : 0.0;
  std::string tail;
  if (opt_.total > 0) tail += " " + std::to_string(static_cast<int>(frac * 100)) + "%";
  for (const ProgressField& f : fields_) {
    tail += " ";
    if (!f.name.empty()) tail += f.name + " ";
    tail += f.value;
  }
  if (!opt_.unit.empty() && !std::isnan(work_per_sec_) && work_per_sec_ > 0) {
    tail += " " + format_rate(work_per_sec_, opt_.unit);
  }
  if (opt_.total > 0 && !std::isnan(sec_per_step_)) {
    if (step_ >= opt_.total) {
      tail += " done";
    } else {
      tail += " ETA " + format_duration(sec_per_step_ * static_cast<double>(opt_.total - step_));
    }
  }
  if (width <= 0) return head + tail;

  std::string line = head;
  // The bar takes what is left of the line, within [kMinBarCells, kMaxBarCells] cells.
  const int room = width - 1 - static_cast<int>(head.size() + tail.size()) - 3;
  const int cells = std::min(room, kMaxBarCells);
  if (opt_.total > 0 && cells >= kMinBarCells) {
    const int filled = static_cast<int>(frac * cells);
    line += " [" + std::string(filled, '#') + std::string(cells - filled, '.') + "]";
  }
  line += tail;
  // A line as wide as the terminal wraps, and \r then redraws only its second half.
  if (static_cast<int>(line.size()) > width - 1) line.resize(std::max(width - 1, 0));
  return line;
}

void ProgressBar::draw(bool final_line) {
  if (tty_) {
    const std::string line = render(line_width());
    std::string pad;
    if (drawn_length_ > line.size()) pad.assign(drawn_length_ - line.size(), ' ');
    *out_ << '\r' << line << pad;
    if (final_line) {
      *out_ << '\n';
      drawn_length_ = 0;
    } else {
      drawn_length_ = line.size();
    }
  } else {
    *out_ << render(0) << '\n';
  }
  out_->flush();
  shown_current_ = true;
}

void ProgressBar::print(const std::string& line) {
  if (enabled_ && tty_ && drawn_length_ > 0) {
    // Blank the bar, print the line, redraw the bar below it.
    *out_ << '\r' << std::string(drawn_length_, ' ') << '\r' << line << '\n';
    drawn_length_ = 0;
    draw(false);
  } else {
    *out_ << line << '\n';
    out_->flush();
  }
}

void ProgressBar::finish() {
  if (!enabled_ || finished_) return;
  finished_ = true;
  measure(now());
  if (tty_) {
    if (drawn_length_ > 0 || !shown_current_) draw(true);
  } else if (!shown_current_) {
    draw(true);
  }
}

}  // namespace qat::train

/* flowgate dashboard: countdowns, copy buttons and confirmations. No eval, no inline code. */
(function () {
  "use strict";

  function format(seconds) {
    var s = Math.max(0, Math.floor(seconds));
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    var mm = h ? String(m).padStart(2, "0") : String(m);
    return (h ? h + ":" : "") + mm + ":" + String(r).padStart(2, "0");
  }

  // Countdowns count from the server's figure, so a wrong client clock does not matter.
  function tick() {
    var now = performance.now();
    document.querySelectorAll("[data-seconds-left]").forEach(function (el) {
      if (!el.dataset.t0) { el.dataset.t0 = String(now); }
      var left = parseFloat(el.dataset.secondsLeft) - (now - parseFloat(el.dataset.t0)) / 1000;
      el.textContent = left > 0 ? format(left) : "ended";
    });
  }

  function copy(button) {
    var field = document.getElementById(button.dataset.copyTarget);
    if (!field) { return; }
    var done = function () {
      button.textContent = "Copied";
      setTimeout(function () { button.textContent = "Copy"; }, 1500);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(field.value).then(done, function () {
        field.select(); document.execCommand("copy"); done();
      });
    } else {
      field.select(); document.execCommand("copy"); done();
    }
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy-target]");
    if (button) { event.preventDefault(); copy(button); }
  });

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.dataset && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
      event.preventDefault();
      event.stopImmediatePropagation();
    }
  }, true);

  // Live refreshes replace the markup; keep the <details> the user opened open.
  var opened = [];
  document.addEventListener("htmx:beforeSwap", function () {
    opened = Array.prototype.map.call(document.querySelectorAll("details[id][open]"), function (el) {
      return el.id;
    });
  });
  document.addEventListener("htmx:afterSettle", function () {
    opened.forEach(function (id) {
      var el = document.getElementById(id);
      if (el) { el.open = true; }
    });
  });

  document.addEventListener("DOMContentLoaded", tick);
  document.addEventListener("htmx:afterSettle", tick);
  setInterval(tick, 1000);
})();

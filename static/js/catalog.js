// Marketplace search: updates the results as filters change, keeps the URL shareable, and says
// when it is searching or when something went wrong. Without JavaScript the form works as is.
(function () {
  "use strict";
  var form = document.getElementById("catalog-search");
  var results = document.getElementById("catalog-results");
  var status = document.getElementById("catalog-status");
  if (!form || !results || !window.fetch) { return; }
  var controller = null;
  var timer = null;
  var messages = {
    searching: form.getAttribute("data-searching") || "Searching…",
    failed: form.getAttribute("data-failed") || "The search failed. Check your connection and try again.",
    retry: form.getAttribute("data-retry") || "Try again"
  };

  function queryString() {
    var params = new URLSearchParams(new FormData(form));
    Array.from(params.keys()).forEach(function (key) {
      if (!params.get(key)) { params.delete(key); }
    });
    return params.toString();
  }

  function search(push) {
    var qs = queryString();
    var url = window.location.pathname + (qs ? "?" + qs : "");
    if (controller) { controller.abort(); }
    controller = new AbortController();
    results.setAttribute("aria-busy", "true");
    status.textContent = messages.searching;
    fetch(url, { headers: { "X-Requested-With": "fetch" }, signal: controller.signal, credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok && response.status !== 400) { throw new Error(String(response.status)); }
        return response.text();
      })
      .then(function (html) {
        results.innerHTML = html;
        results.setAttribute("aria-busy", "false");
        var count = document.getElementById("result-count");
        status.textContent = count ? count.textContent : "";
        if (push) { window.history.pushState(null, "", url); } else { window.history.replaceState(null, "", url); }
      })
      .catch(function (error) {
        if (error.name === "AbortError") { return; }
        results.setAttribute("aria-busy", "false");
        status.textContent = "";
        var box = document.createElement("div");
        box.className = "alert alert-error";
        box.setAttribute("role", "alert");
        var text = document.createElement("p");
        text.textContent = messages.failed;
        var button = document.createElement("button");
        button.type = "button";
        button.className = "button button-secondary";
        button.textContent = messages.retry;
        button.addEventListener("click", function () { search(false); });
        box.appendChild(text);
        box.appendChild(button);
        results.innerHTML = "";
        results.appendChild(box);
      });
  }

  form.addEventListener("change", function (event) {
    if (event.target.name === "q") { return; }
    search(true);
  });
  form.addEventListener("input", function (event) {
    if (event.target.name !== "q") { return; }
    clearTimeout(timer);
    timer = setTimeout(function () { search(false); }, 300);
  });
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    clearTimeout(timer);
    search(true);
  });
  window.addEventListener("popstate", function () { window.location.reload(); });
})();

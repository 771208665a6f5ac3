// Live updates without reloading: every few seconds, ask the page's own URL for its live
// parts (JSON: {"updated": "...", "parts": {name: html}}) and swap the elements marked
// data-live="name" in place. The form, the scroll position and whatever the user opened
// (<details id=...>) stay as they are. Without JavaScript the page is complete as served.
(function () {
  "use strict";
  var body = document.body;
  var url = body.getAttribute("data-live-url");
  if (!url) { return; }
  var every = Number(body.getAttribute("data-live-every")) || 10000;
  var stamp = document.getElementById("live-status");
  var shown = {};  // part name -> the HTML in place now
  var version = "";  // of the parts in place: the server answers "same" while it holds

  function swap(element, html) {
    var name = element.getAttribute("data-live");
    if (shown[name] === html) { return; }
    var open = [];
    element.querySelectorAll("details[open][id]").forEach(function (d) { open.push(d.id); });
    element.innerHTML = html;
    shown[name] = html;
    open.forEach(function (id) {
      var again = document.getElementById(id);
      if (again) { again.open = true; }
    });
  }

  function tick() {
    fetch(url + "&seen=" + encodeURIComponent(version), { headers: { "Accept": "application/json" }, cache: "no-store",
                 credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) { throw new Error(String(response.status)); }
        return response.json();
      })
      .then(function (data) {
        if (!data.same) {
          document.querySelectorAll("[data-live]").forEach(function (element) {
            var html = data.parts[element.getAttribute("data-live")];
            if (typeof html === "string") { swap(element, html); }
          });
          version = data.version;
        }
        if (stamp) {
          stamp.textContent = "Cập nhật " + data.updated;
          stamp.classList.remove("offline");
        }
      })
      .catch(function () {
        if (stamp) {
          stamp.textContent = "Mất kết nối tới máy giám sát, đang thử lại…";
          stamp.classList.add("offline");
        }
      })
      .then(function () { window.setTimeout(tick, every); });
  }

  window.setTimeout(tick, every);
}());

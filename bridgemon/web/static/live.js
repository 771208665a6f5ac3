// Live updates without reloading: every few seconds, ask the page's own URL for its live
// parts (JSON: {"updated": "...", "parts": {name: html}}) and swap the elements marked
// data-live="name" in place. The form, the scroll position and whatever the user opened
// (<details id=...>) stay as they are, and a part holding a field the user is filling in
// (an operator's note) waits until they are done. A 401 means the session ended: the page
// says so and links to the sign-in page instead of retrying. Without JavaScript the page
// is complete as served.
(function () {
  "use strict";
  var body = document.body;
  var url = body.getAttribute("data-live-url");
  if (!url) { return; }
  var every = Number(body.getAttribute("data-live-every")) || 10000;
  var stamp = document.getElementById("live-status");
  var shown = {};  // part name -> the HTML in place now
  var version = "";  // of the parts in place: the server answers "same" while it holds

  function editing(element) {
    var active = document.activeElement;
    if (active && active !== document.body && element.contains(active) &&
        /^(INPUT|TEXTAREA|SELECT)$/.test(active.tagName)) { return true; }
    var fields = element.querySelectorAll("input[type=text], textarea");
    for (var i = 0; i < fields.length; i += 1) {
      if (fields[i].value !== fields[i].defaultValue) { return true; }
    }
    return false;
  }

  function signedOut() {
    if (!stamp) { return; }
    stamp.textContent = "Phiên đăng nhập đã hết hạn. ";
    var link = document.createElement("a");
    link.href = "/login?next=" + encodeURIComponent(window.location.pathname + window.location.search);
    link.textContent = "Đăng nhập lại";
    link.id = "sign-in-again";
    stamp.appendChild(link);
    stamp.classList.add("offline");
  }

  function swap(element, html) {
    var name = element.getAttribute("data-live");
    if (shown[name] === html) { return true; }
    if (editing(element)) { return false; }
    var open = [];
    element.querySelectorAll("details[open][id]").forEach(function (d) { open.push(d.id); });
    element.innerHTML = html;
    shown[name] = html;
    open.forEach(function (id) {
      var again = document.getElementById(id);
      if (again) { again.open = true; }
    });
    return true;
  }

  function tick() {
    fetch(url + "&seen=" + encodeURIComponent(version), { headers: { "Accept": "application/json" }, cache: "no-store",
                 credentials: "same-origin" })
      .then(function (response) {
        if (response.status === 401) { return null; }
        if (!response.ok) { throw new Error(String(response.status)); }
        return response.json();
      })
      .then(function (data) {
        if (data === null) {
          signedOut();
          return false;
        }
        if (!data.same) {
          var complete = true;
          document.querySelectorAll("[data-live]").forEach(function (element) {
            var html = data.parts[element.getAttribute("data-live")];
            if (typeof html === "string" && !swap(element, html)) { complete = false; }
          });
          // A part left as it was (the user is typing in it) is asked for again next time.
          version = complete ? data.version : "";
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
      .then(function (again) {
        if (again !== false) { window.setTimeout(tick, every); }
      });
  }

  window.setTimeout(tick, every);
}());

// Live updates: the server-sent events name the cases that changed; the page fetches fresh HTML for the
// parts that show them. A form someone typed into is never replaced. Without script every page still works
// (reload to see changes).
(function () {
  "use strict";
  if (!window.EventSource || !window.fetch) return;

  function fragmentUrl(base, name) {
    var url = new URL(base, window.location.href);
    url.searchParams.set("fragment", name);
    return url.toString();
  }

  function refresh(element, base, name) {
    return fetch(fragmentUrl(base, name), { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) { if (html !== null) element.innerHTML = html; })
      .catch(function () { /* the next event tries again */ });
  }

  function untouched(region) {
    var text = region.querySelector("textarea");
    return !text || (text.value === text.defaultValue && document.activeElement !== text);
  }

  var list = document.querySelector('[data-live="list"]');
  var live = document.querySelector('[data-live="case"]');
  var form = document.querySelector('[data-live="form"]');
  if (!list && !live) return;

  function update(change) {
    if (list) {
      refresh(list, window.location.href, "list");
    }
    if (live && (change.all || change.cases.indexOf(live.dataset.case) >= 0)) {
      refresh(live, live.dataset.url, "live").then(function () {
        if (form && untouched(form)) refresh(form, live.dataset.url, "form");
      });
    }
  }

  var source = new EventSource("/events");
  // Whatever changed between serving the page and subscribing (or while reconnecting) sent no event to
  // this page: catch up once the stream is open.
  source.addEventListener("open", function () { update({ all: true, cases: [] }); });
  source.addEventListener("change", function (event) { update(JSON.parse(event.data)); });
})();

// On a narrow screen the navigation folds into a Menu button. Without this script
// (or on a wide screen) the navigation simply shows: nothing depends on it.
document.documentElement.classList.add("js");
document.addEventListener("DOMContentLoaded", function () {
  var button = document.getElementById("menu-button");
  var header = document.querySelector("header.top");
  if (!button || !header) return;
  button.addEventListener("click", function () {
    var open = header.classList.toggle("menu-open");
    button.setAttribute("aria-expanded", open ? "true" : "false");
  });
});

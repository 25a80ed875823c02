"""What the tests share: real caches and servers started on loopback, fakes of the CDN
APIs, workers, browser helpers and admin helpers."""

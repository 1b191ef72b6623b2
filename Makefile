# Everything a newcomer needs: `make run` and `make test` set up .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# What production runs (requirements.txt), then the test and lint tools on top (requirements-dev.txt).
STAMP := $(VENV)/.installed-$(shell cksum requirements.txt | cut -d' ' -f1)
DEV_STAMP := $(VENV)/.installed-dev-$(shell cksum requirements.txt requirements-dev.txt | cut -d' ' -f1 | paste -sd- -)

.PHONY: install install-dev run serve test lint bench bench-scale soak check-deploy clean

$(STAMP): requirements.txt
	rm -f $(VENV)/.installed-*
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $@

$(DEV_STAMP): $(STAMP) requirements-dev.txt
	rm -f $(VENV)/.installed-dev-*
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@

install: $(STAMP)

install-dev: $(DEV_STAMP)

run: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py seed_demo
	@echo "Serving the back-office at http://127.0.0.1:8000/ (log in with a demo login above)"
	$(BIN)/python manage.py run_projections & runner=$$!; \
	trap 'kill $$runner 2>/dev/null' EXIT INT TERM; \
	$(BIN)/python manage.py runserver 127.0.0.1:8000

# As production runs it: gunicorn on config.production and the projection runner, on the database
# DATABASE_URL names (see docs/operations.md, "Serving"). Stops cleanly on SIGTERM.
serve: install
	$(BIN)/python -m config.serve

test: install-dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# All four checks run, and lint fails if any of them failed. mypy loads config.settings
# (django-stubs), which reads DATABASE_URL but never connects: the placeholder keeps it
# from starting the embedded PostgreSQL.
lint: install-dev
	@status=0; \
	echo "== ruff check"; $(BIN)/ruff check . || status=1; \
	echo "== ruff format --check"; $(BIN)/ruff format --check . || status=1; \
	echo "== mypy"; DATABASE_URL=postgres://lint@127.0.0.1:5432/unused $(BIN)/mypy || status=1; \
	echo "== lint-imports"; $(BIN)/lint-imports || status=1; \
	exit $$status

bench: install-dev
	$(BIN)/python -m bench

# A million accounts and ten million events (generated once into bank_scale, then reused): not part of make bench.
bench-scale: install-dev
	$(BIN)/python -m bench.scale

soak: install-dev
	$(BIN)/python -m soak $(SOAK_ARGS)

# The checks read settings only; they never connect to the database they are given.
check-deploy: install
	DJANGO_SETTINGS_MODULE=config.production SECRET_KEY=$$($(BIN)/python -c 'import secrets; print(secrets.token_urlsafe(50))') \
		EVENTSTORE_SIGNING_KEYS=k1:$$($(BIN)/python -c 'import secrets; print(secrets.token_urlsafe(48))') \
		ALLOWED_HOSTS=bank.example DATABASE_URL=$${DATABASE_URL:-postgres://deploy-check@127.0.0.1:5432/unused} \
		$(BIN)/python manage.py check --deploy --fail-level WARNING

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .mypy_cache .ruff_cache

# Everything a newcomer needs: `make run` and `make test` set up .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum requirements.txt | cut -d' ' -f1)

.PHONY: install run test bench soak check-deploy clean

$(STAMP): requirements.txt
	rm -f $(VENV)/.installed-*
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $@

install: $(STAMP)

run: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py seed_demo
	@echo "Serving the back-office at http://127.0.0.1:8000/ (log in with a demo login above)"
	$(BIN)/python manage.py run_projections & runner=$$!; \
	trap 'kill $$runner 2>/dev/null' EXIT INT TERM; \
	$(BIN)/python manage.py runserver 127.0.0.1:8000

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install
	$(BIN)/python -m bench

soak: install
	$(BIN)/python -m soak $(SOAK_ARGS)

# The checks read settings only; they never connect to the database they are given.
check-deploy: install
	DJANGO_SETTINGS_MODULE=config.production SECRET_KEY=$$($(BIN)/python -c 'import secrets; print(secrets.token_urlsafe(50))') \
		ALLOWED_HOSTS=bank.example DATABASE_URL=$${DATABASE_URL:-postgres://deploy-check@127.0.0.1:5432/unused} \
		$(BIN)/python manage.py check --deploy --fail-level WARNING

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis

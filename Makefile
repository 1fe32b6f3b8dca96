# medpipe: `make demo` runs the main job on the bundled sample archive, `make test` runs the suite.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO_DIR ?= demo-output

.PHONY: venv test lint demo bench clean browser server napari-screenshot slurm slurm-stop \
        pyradiomics-venv orthanc orthanc-stop s3 s3-stop

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check medpipe flows tests bench

# the browser test drives Debian's chromium (Playwright's own download does not work here)
CHROMIUM ?= /usr/bin/chromium

# the suite on PYTEST_WORKERS processes (CI has 2 cores); each test module stays on one
# worker and the integration modules share one (tests/conftest.py)
PYTEST_WORKERS ?= 2

test: lint browser pyradiomics-venv
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadgroup

browser:
	@test -x $(CHROMIUM) || { \
	  echo "installing chromium for the browser test"; \
	  SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
	    chromium fonts-liberation; }

# a real napari screenshot (docs/img/napari-ibsi-ct.png) of an IBSI CT with its RTSTRUCT mask,
# under Debian's Xvfb; installs Xvfb, the X11/GL libraries Qt's xcb platform needs, and the
# `napari` extra (napari with PyQt6) when they are missing
SHARED_DATA ?= ../shared/data
NAPARI_DEBS := xvfb xauth libgl1 libegl1 libfontconfig1 libdbus-1-3 libxkbcommon-x11-0 \
  libxcb-cursor0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0 \
  libxcb-render-util0 libxcb-shape0 libxcb-xinerama0 libxcb-xkb1

napari-screenshot: $(STAMP)
	@dpkg -s $(NAPARI_DEBS) >/dev/null 2>&1 || { \
	  echo "installing Xvfb and Qt's X11 libraries for napari"; \
	  SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
	    $(NAPARI_DEBS); }
	@$(BIN)/python -c 'import PyQt6.QtWidgets, napari_ome_zarr' 2>/dev/null || \
	  $(BIN)/python -m pip install --quiet -e '.[napari]'
	QT_QPA_PLATFORM=xcb xvfb-run -a -s "-screen 0 1280x1024x24" \
	  $(BIN)/python docs/img/napari_screenshot.py --data $(SHARED_DATA) --out docs/img/napari-ibsi-ct.png

# pyradiomics 3.0.1 in a throw-away venv (not a medpipe dependency) for the filtered-image
# baseline test (tests/features/test_image_types_pyradiomics.py) and bench/features.py; the
# same packages and path as bench/features.py.  A failed install only warns: the test
# then skips and says why.
PYRADIOMICS_VENV ?= bench-output/pyradiomics-venv
PYRADIOMICS_PKGS := numpy setuptools wheel SimpleITK pykwalify six PyWavelets

pyradiomics-venv:
	@$(PYRADIOMICS_VENV)/bin/python -c 'import radiomics, SimpleITK, pywt' 2>/dev/null || { \
	  echo "building the pyradiomics venv in $(PYRADIOMICS_VENV)"; \
	  $(PYTHON) -m venv $(PYRADIOMICS_VENV) && \
	  $(PYRADIOMICS_VENV)/bin/python -m pip install --quiet $(PYRADIOMICS_PKGS) && \
	  $(PYRADIOMICS_VENV)/bin/python -m pip install --quiet --no-build-isolation \
	    pyradiomics==3.0.1 || \
	  echo "WARNING: the pyradiomics venv could not be built; its tests will skip"; }

# a local Prefect server with its embedded SQLite database (the UI at http://127.0.0.1:4200)
server: $(STAMP)
	PREFECT_SERVER_ANALYTICS_ENABLED=false $(BIN)/prefect server start --host 127.0.0.1 --port 4200

# a one-node SLURM cluster on this machine (needs root: installs slurm-wlm and munge when
# missing, writes /etc/slurm/slurm.conf, starts munged, slurmctld, slurmd); idempotent.
# `make slurm-stop` stops the daemons by their PIDs.  Used by tests/integration/test_slurm.py.
slurm:
	bash deploy/slurm/start.sh

slurm-stop:
	bash deploy/slurm/stop.sh

demo: $(STAMP)
	$(BIN)/medpipe demo --out $(DEMO_DIR)

bench: $(STAMP)
	$(BIN)/python bench/ingest.py

clean:
	rm -rf $(VENV) $(DEMO_DIR)

# a local Orthanc PACS with DICOMweb on 127.0.0.1:$(ORTHANC_PORT) (deploy/orthanc/; PID file in
# $(ORTHANC_DIR)); archive URL: dicomweb+http://127.0.0.1:$(ORTHANC_PORT)/dicom-web
ORTHANC_PORT ?= 8042
ORTHANC_DIR  ?= $(or $(TMPDIR),/tmp)/medpipe-orthanc
orthanc:
	ORTHANC_PORT=$(ORTHANC_PORT) ORTHANC_DIR=$(ORTHANC_DIR) sh deploy/orthanc/start.sh
orthanc-stop:
	ORTHANC_DIR=$(ORTHANC_DIR) sh deploy/orthanc/stop.sh

# a local S3 API (moto's server) on 127.0.0.1:$(S3_PORT) (deploy/s3/; PID file in $(S3_DIR))
S3_PORT ?= 5555
S3_DIR  ?= $(or $(TMPDIR),/tmp)/medpipe-s3
s3:
	S3_PORT=$(S3_PORT) S3_DIR=$(S3_DIR) BIN=$(BIN) sh deploy/s3/start.sh
s3-stop:
	S3_DIR=$(S3_DIR) sh deploy/s3/stop.sh

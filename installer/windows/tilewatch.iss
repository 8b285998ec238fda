; Inno Setup 6 script: a per-user Windows installer around the one-folder build.
;
;   1. on Windows, in the project venv:  pip install -e ".[installer]"
;                                        pyinstaller --noconfirm --clean --distpath dist --workpath build\pyinstaller installer\tilewatch.spec
;   2. self-test the folder:             set QT_QPA_PLATFORM=offscreen && dist\tilewatch\tilewatch.exe --selftest
;      (a windowed .exe has no console: check %ERRORLEVEL% via "start /wait", and the log
;       in %LOCALAPPDATA%\tilewatch\tilewatch\Logs)
;   3. compile:                          iscc /DAppVersion=0.1.0 installer\windows\tilewatch.iss
;      -> dist\tilewatch-0.1.0-windows-x64-setup.exe
;
; Paths below are relative to this file (SourceDir = the repository root).
; Per-user install (no admin prompt); Start-menu entry, optional desktop icon,
; and a clean uninstall of the program folder. The user's runs, settings and
; logs (platformdirs folders under %LOCALAPPDATA%\tilewatch\tilewatch) are kept.

#ifndef AppVersion
  #define AppVersion "0.1.0"
#endif

[Setup]
AppId={{6B1F3C2E-7A4D-4E59-9C61-2F0D8A5B7E13}
AppName=Tilewatch
AppVersion={#AppVersion}
AppPublisher=Tilewatch developers
AppComments=Train U-Net segmentation models on multi-channel TIFF tiles and see when the outputs saturate
SourceDir=..\..
OutputDir=dist
OutputBaseFilename=tilewatch-{#AppVersion}-windows-x64-setup
DefaultDirName={autopf}\Tilewatch
DefaultGroupName=Tilewatch
DisableProgramGroupPage=yes
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
SetupIconFile=resources\icons\tilewatch.ico
UninstallDisplayIcon={app}\tilewatch.exe
; the folder is ~1 GB of mostly incompressible libraries: lzma2 pays off anyway
Compression=lzma2/normal
SolidCompression=no
WizardStyle=modern

[Languages]
Name: "english"; MessagesFile: "compiler:Default.isl"

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked

[Files]
Source: "dist\tilewatch\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{group}\Tilewatch"; Filename: "{app}\tilewatch.exe"; Comment: "Segmentation training workbench"
Name: "{group}\Uninstall Tilewatch"; Filename: "{uninstallexe}"
Name: "{autodesktop}\Tilewatch"; Filename: "{app}\tilewatch.exe"; Tasks: desktopicon

[Run]
Filename: "{app}\tilewatch.exe"; Description: "{cm:LaunchProgram,Tilewatch}"; Flags: nowait postinstall skipifsilent

[UninstallDelete]
; files Python may have written next to the program (byte-code caches)
Type: filesandordirs; Name: "{app}\_internal\__pycache__"

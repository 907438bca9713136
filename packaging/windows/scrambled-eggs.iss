; Inno Setup 6 script: installer for the one-folder Windows build.
;   python packaging\build.py windows
; runs PyInstaller, then:
;   iscc /DAppVersion=0.1.0 /DSourceDir=dist\scrambled-eggs /DOutputDir=dist packaging\windows\scrambled-eggs.iss
; Per-user install by default (no admin rights needed); the user may choose all users.

#ifndef AppVersion
  #error Pass the version: iscc /DAppVersion=X.Y.Z
#endif
#ifndef SourceDir
  #define SourceDir "..\..\dist\scrambled-eggs"
#endif
#ifndef OutputDir
  #define OutputDir "..\..\dist"
#endif

#define AppName "Scrambled Eggs"
#define AppExe "scrambled-eggs.exe"
#define CliExe "scrambled-eggs-cli.exe"

[Setup]
; A fixed AppId keeps upgrades and uninstall working across versions: never change it.
AppId={{6B0E4F0A-3C59-4C53-9B8E-5C2D2B7E9A11}
AppName={#AppName}
AppVersion={#AppVersion}
AppVerName={#AppName} {#AppVersion}
AppPublisher=The Scrambled Eggs developers
VersionInfoVersion={#AppVersion}
DefaultDirName={autopf}\{#AppName}
DefaultGroupName={#AppName}
DisableProgramGroupPage=yes
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
LicenseFile=..\..\LICENSE
SetupIconFile=scrambled-eggs.ico
UninstallDisplayIcon={app}\{#AppExe}
OutputDir={#OutputDir}
OutputBaseFilename=scrambled-eggs-{#AppVersion}-setup
Compression=lzma2/max
SolidCompression=yes
WizardStyle=modern
CloseApplications=yes

[Languages]
Name: "english"; MessagesFile: "compiler:Default.isl"

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked

[Files]
Source: "{#SourceDir}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{group}\{#AppName}"; Filename: "{app}\{#AppExe}"
Name: "{group}\{cm:UninstallProgram,{#AppName}}"; Filename: "{uninstallexe}"
Name: "{autodesktop}\{#AppName}"; Filename: "{app}\{#AppExe}"; Tasks: desktopicon

[Registry]
; eggs: invite links (docs/protocol.md section 1) open the app on "add this contact?"; it
; takes the link as its argument. HKA is HKCU\Software\Classes for a per-user install
; (the default), HKLM for all users.
Root: HKA; Subkey: "Software\Classes\eggs"; ValueType: string; ValueName: ""; ValueData: "URL:Scrambled Eggs invite"; Flags: uninsdeletekey
Root: HKA; Subkey: "Software\Classes\eggs"; ValueType: string; ValueName: "URL Protocol"; ValueData: ""
Root: HKA; Subkey: "Software\Classes\eggs\DefaultIcon"; ValueType: string; ValueName: ""; ValueData: """{app}\{#AppExe}"",0"
Root: HKA; Subkey: "Software\Classes\eggs\shell\open\command"; ValueType: string; ValueName: ""; ValueData: """{app}\{#AppExe}"" ""%1"""

[Run]
Filename: "{app}\{#AppExe}"; Description: "{cm:LaunchProgram,{#AppName}}"; Flags: nowait postinstall skipifsilent

; The user's profile (messages, keys) lives in their AppData folder and is kept on
; uninstall on purpose: removing the app must never destroy a conversation history.
